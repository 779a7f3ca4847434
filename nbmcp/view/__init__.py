"""The person's side: a live, read-only view of a notebook in the browser (issue 22)."""
