"""The session: one notebook and the kernel that runs its code, the one door every tool and script uses."""
