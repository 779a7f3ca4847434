// The smallest MCP Apps host, built on the specification's reference host library (AppBridge from
// @modelcontextprotocol/ext-apps) and the MCP SDK's client, for tests/test_view_app.py. Bundled by the
// test with esbuild and served on nbmcp's own origin, it connects to nbmcp over streamable HTTP, calls
// one tool as a model would, and shows the tool's ui:// resource in a sandboxed frame, as a chat does.
//
// The page's URL says which tool to call first: ?tool=NAME&args=JSON; window.runTool(name, args) calls
// another. window.hostLog records what happened (the test prints it when something fails);
// window.hostState is "ready" once the first result is handed over.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { AppBridge, PostMessageTransport, getToolUiResourceUri } from "@modelcontextprotocol/ext-apps/app-bridge";

const log = (window.hostLog = []);
const say = (...parts) => log.push(parts.map((p) => (typeof p === "string" ? p : JSON.stringify(p))).join(" "));

async function main() {
  const query = new URLSearchParams(location.search);
  const toolName = query.get("tool");
  const args = JSON.parse(query.get("args") || "{}");
  const hostInfo = { name: "nbmcp-test-host", version: "1.0.0" };

  // A host that renders apps says so: the extension and its MIME type.
  const client = new Client(hostInfo, {
    capabilities: { extensions: { "io.modelcontextprotocol/ui": { mimeTypes: ["text/html;profile=mcp-app"] } } },
  });
  await client.connect(new StreamableHTTPClientTransport(new URL("/mcp", location.origin)));
  const { tools } = await client.listTools();
  const tool = tools.find((t) => t.name === toolName);
  if (!tool) throw new Error(`no tool ${toolName} in ${tools.map((t) => t.name)}`);
  const uri = getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${toolName} names no ui:// resource`);
  const read = await client.readResource({ uri });
  const content = read.contents[0];
  say("resource", uri, content.mimeType, `${content.text.length} chars`);

  const bridge = new AppBridge(client, hostInfo, { serverTools: {}, logging: {} }, {
    hostContext: { theme: "light", displayMode: "inline", platform: "web" },
  });
  const frame = document.createElement("iframe");
  frame.id = "app";
  // As a chat shows an app: scripts may run, but in an opaque origin (no allow-same-origin).
  frame.setAttribute("sandbox", "allow-scripts");
  frame.style.cssText = "width: 100%; border: 1px solid #ccc;";
  document.body.append(frame);
  bridge.onsizechange = ({ height }) => {
    if (height) frame.style.height = `${height}px`;
  };
  bridge.onloggingmessage = (params) => say("app log", params);
  const initialized = new Promise((resolve) => {
    bridge.oninitialized = resolve;
  });
  await bridge.connect(new PostMessageTransport(frame.contentWindow, frame.contentWindow));
  frame.srcdoc = content.text;
  await initialized;
  say("app initialized", bridge.getAppVersion());

  // As a chat does when the model calls a tool: the input to the app, the call, the result to the app.
  window.runTool = async (name, toolArgs) => {
    await bridge.sendToolInput({ arguments: toolArgs });
    const result = await client.callTool({ name, arguments: toolArgs });
    say("tool result", name, result.isError ? "error" : "ok");
    await bridge.sendToolResult(result);
    return !result.isError;
  };
  await window.runTool(toolName, args);
  window.hostState = "ready";
}

main().catch((err) => {
  say("host failed", String(err && err.stack ? err.stack : err));
  window.hostState = "failed";
});
