// nbmcp's notebook view as an MCP App (the io.modelcontextprotocol/ui extension, spec 2026-01-26).
// The host shows this document in a sandboxed frame beside the answer of an nbmcp tool. It speaks
// JSON-RPC 2.0 with the host over postMessage: ui/initialize, then ui/notifications/initialized; the
// host sends the tool's input and result (ui/notifications/tool-input, tool-result); the app calls
// nbmcp's app-only tool view_notebook through the host (tools/call) for the cells rendered as HTML,
// after each tool result and about once a second while a cell runs, every few seconds otherwise.
// Cells are <section> elements keyed by cell id, updated in place (the scroll position stays); only
// the cells near the app's scroll box are asked for, so a 10,000-cell notebook stays usable.
(function () {
  "use strict";
  var PROTOCOL_VERSION = "2026-01-26";
  var main = document.getElementById("cells");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("error");
  var followEl = document.getElementById("follow");
  var nameEl = document.getElementById("name");
  var els = new Map();   // id -> <section>
  var shown = new Map(); // id -> hash of the HTML in the section
  var want = new Map();  // id -> hash of the cell in the file
  var byHash = new Map(); // hash -> rendered cell, for cells that move or come back
  var visible = new Set(); // ids near the cells' scroll box
  var state = null;      // the `state` of the last full answer
  var running = null, last = null;
  var notebookPath = null;
  var nextId = 1, pending = new Map();
  var timer = null, busy = false, again = false, stopped = false, quietSince = Date.now();

  // -- JSON-RPC over postMessage, with the host (window.parent) only ---------------------------------
  function post(message) { window.parent.postMessage(message, "*"); }
  function request(method, params) {
    var id = nextId++;
    post({ jsonrpc: "2.0", id: id, method: method, params: params || {} });
    return new Promise(function (resolve, reject) { pending.set(id, { resolve: resolve, reject: reject }); });
  }
  function notify(method, params) { post({ jsonrpc: "2.0", method: method, params: params || {} }); }

  window.addEventListener("message", function (e) {
    var m = e.data;
    if (m && typeof m.nbmcpHeight === "number") return frameHeight(e.source, m.nbmcpHeight);
    if (e.source !== window.parent || !m || m.jsonrpc !== "2.0") return;
    if (m.method === undefined && m.id !== undefined) {
      var waiter = pending.get(m.id);
      if (!waiter) return;
      pending.delete(m.id);
      if (m.error) waiter.reject(new Error(m.error.message || "error " + m.error.code)); else waiter.resolve(m.result);
    } else if (m.id !== undefined) {
      hostRequest(m);
    } else {
      hostNotification(m.method, m.params || {});
    }
  });

  function hostRequest(m) {
    if (m.method === "ui/resource-teardown") {
      stopped = true;
      clearTimeout(timer);
      post({ jsonrpc: "2.0", id: m.id, result: {} });
    } else if (m.method === "ping") {
      post({ jsonrpc: "2.0", id: m.id, result: {} });
    } else {
      post({ jsonrpc: "2.0", id: m.id, error: { code: -32601, message: "Method not found: " + m.method } });
    }
  }

  function hostNotification(method, params) {
    if (method === "ui/notifications/tool-input") {
      var args = params.arguments || {};
      if (typeof args.notebook_path === "string") notebookPath = args.notebook_path;
      refresh();
    } else if (method === "ui/notifications/tool-result") {
      quietSince = Date.now();
      refresh();
    } else if (method === "ui/notifications/host-context-changed") {
      applyContext(params);
    }
  }

  function applyContext(context) {
    if (context && context.theme) document.documentElement.style.colorScheme = context.theme;
  }

  // -- the cells ---------------------------------------------------------------------------------------
  var observer = new IntersectionObserver(function (entries) {
    var grew = false;
    entries.forEach(function (e) {
      var id = e.target.dataset.id;
      if (e.isIntersecting) { grew = grew || !visible.has(id); visible.add(id); } else visible.delete(id);
    });
    if (grew) refresh();
  }, { root: main, rootMargin: "1500px 0px" });

  function section(id) {
    var el = els.get(id);
    if (!el) {
      el = document.createElement("section");
      el.className = "cell pending";
      el.dataset.id = id;
      els.set(id, el);
      observer.observe(el);
    }
    return el;
  }

  function setOrder(order) {
    var keep = new Set(order);
    Array.from(els.keys()).forEach(function (id) {
      if (keep.has(id)) return;
      observer.unobserve(els.get(id));
      els.get(id).remove();
      els.delete(id); shown.delete(id); want.delete(id); visible.delete(id);
    });
    var next = main.firstChild;
    order.forEach(function (id) {
      var el = section(id);
      if (el === next) next = el.nextSibling; else main.insertBefore(el, next);
    });
  }

  function apply(cell, id) {
    var el = els.get(id);
    if (!el) return;
    el.innerHTML = cell.html;
    el.dataset.type = cell.type;
    el.classList.remove("pending");
    shown.set(id, cell.hash);
    delete el.dataset.runningHtml;
    decorate(id);
  }

  function decorate(id) {
    var el = els.get(id);
    if (!el) return;
    var badge = [];
    var isRunning = running && running.id === id;
    var isLast = last && last.id === id;
    el.classList.toggle("running", !!isRunning);
    el.classList.toggle("last", !!isLast);
    if (isRunning) {
      badge.push("running · " + Number(running.elapsed || 0).toFixed(0) + " s");
      var outputs = el.querySelector(".outputs");
      if (outputs && el.dataset.runningHtml !== running.html) {
        outputs.innerHTML = running.html || "";
        el.dataset.runningHtml = running.html || "";
      }
    } else if (el.dataset.runningHtml !== undefined) {
      delete el.dataset.runningHtml;
      var saved = byHash.get(shown.get(id));
      if (saved) apply(saved, id); // the saved outputs again
      return;
    }
    if (isLast && last.tool) badge.push((isRunning ? "" : "last: ") + last.tool);
    if (badge.length) el.dataset.badge = badge.join(" · "); else delete el.dataset.badge;
  }

  function setMarks(newRunning, newLast) {
    var before = [running && running.id, last && last.id];
    running = newRunning || null;
    last = newLast || null;
    before.concat([running && running.id, last && last.id]).forEach(function (id) { if (id) decorate(id); });
  }

  function follow() {
    if (!followEl.checked) return;
    var target = running ? running.id : last && last.id;
    var el = target && els.get(target);
    if (!el) return;
    // Scroll the cells' own box only: the host's page is not the app's to move.
    var box = main.getBoundingClientRect(), r = el.getBoundingClientRect();
    if (r.top < box.top || r.bottom > box.bottom) main.scrollTop += r.top - box.top - box.height / 3;
  }

  function show(answer) {
    nameEl.textContent = answer.name || "notebook";
    document.title = (answer.name || "notebook") + " · nbmcp";
    errorEl.hidden = !answer.error;
    errorEl.textContent = answer.error || "";
    (answer.cells || []).forEach(function (c) { byHash.set(c.hash, c); });
    if (answer.order) {
      want = new Map(Object.entries(answer.hashes || {}));
      setOrder(answer.order);
      state = answer.state;
      // Forget rendered cells no longer in the notebook (a long session must not grow without end).
      var live = new Set(want.values());
      Array.from(byHash.keys()).forEach(function (h) { if (!live.has(h)) byHash.delete(h); });
      quietSince = Date.now();
    }
    want.forEach(function (hash, id) {
      var cell = shown.get(id) !== hash && byHash.get(hash);
      if (cell) apply(cell, id);
    });
    setMarks(answer.running, answer.last);
    follow();
    document.body.dataset.state = "live";
    window.nbmcpAppUpdates = (window.nbmcpAppUpdates || 0) + 1;
    return answer.more;
  }

  // -- asking nbmcp for the cells, through the host ------------------------------------------------------
  function refresh() {
    if (stopped) return;
    if (busy) { again = true; return; }
    busy = true;
    clearTimeout(timer);
    // The cells near the scroll box, and the hashes of those already shown: the answer holds the rest
    // of them (before the first answer, with no cells yet, it holds every cell, up to its limit).
    var args = { state: state, known: [] };
    if (els.size) {
      args.ids = Array.from(visible);
      args.ids.forEach(function (id) { if (byHash.has(want.get(id))) args.known.push(want.get(id)); });
    }
    if (notebookPath) args.notebook_path = notebookPath;
    request("tools/call", { name: "view_notebook", arguments: args })
      .then(function (result) {
        if (result.isError) throw new Error(textOf(result));
        statusEl.textContent = "live"; statusEl.className = "live";
        if (show(result.structuredContent || {})) again = true;
      })
      .catch(function (err) {
        statusEl.textContent = "not updated: " + err.message; statusEl.className = "down";
      })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); return; }
        schedule();
      });
  }

  function schedule() {
    if (stopped) return;
    // Once a second while something runs or just changed, every few seconds when all is quiet.
    var delay = running || Date.now() - quietSince < 10000 ? 1000 : 3000;
    if (document.hidden) delay = 5000;
    timer = setTimeout(refresh, delay);
  }

  function textOf(result) {
    return (result.content || []).map(function (c) { return c.text || ""; }).join(" ") || "error";
  }

  // An HTML output's sandboxed frame says how tall its document is; nothing else is taken from it.
  function frameHeight(source, h) {
    var frames = main.querySelectorAll("iframe.html-output");
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === source) {
        frames[i].style.height = Math.min(Math.max(h, 16), 4000) + "px";
        return;
      }
    }
  }

  // The host sizes the frame to the document (the cells scroll inside their own box).
  var lastHeight = 0;
  new ResizeObserver(function () {
    var height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    if (height !== lastHeight) { lastHeight = height; notify("ui/notifications/size-changed", { height: height }); }
  }).observe(document.documentElement);
  followEl.addEventListener("change", follow);

  request("ui/initialize", {
    appInfo: { name: "nbmcp notebook view", version: "1" },
    appCapabilities: {},
    protocolVersion: PROTOCOL_VERSION
  }).then(function (result) {
    applyContext(result && result.hostContext);
    notify("ui/notifications/initialized", {});
    statusEl.textContent = "connected";
    refresh();
  }).catch(function (err) {
    statusEl.textContent = "the host did not answer: " + err.message; statusEl.className = "down";
  });
})();
