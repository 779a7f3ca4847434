// nbmcp's live view: keeps the page in step with the notebook through the server's event stream.
// Cells are <section> elements keyed by cell id; only the cells the reader can see are rendered
// (their HTML is fetched when they come near the viewport), so a 10,000-cell notebook stays usable.
// Updates change cells in place: the page never reloads and the browser keeps the scroll position.
(function () {
  "use strict";
  var query = new URLSearchParams(location.search);
  var base = "token=" + encodeURIComponent(query.get("token") || "");
  if (query.get("nb")) base += "&nb=" + encodeURIComponent(query.get("nb"));

  var main = document.getElementById("cells");
  var statusEl = document.getElementById("status");
  var errorEl = document.getElementById("error");
  var followEl = document.getElementById("follow");
  var els = new Map();     // id -> <section>
  var shown = new Map();   // id -> hash of the HTML in the page
  var want = new Map();    // id -> hash of the cell in the file
  var visible = new Set(); // ids near the viewport
  var running = null;      // {id, elapsed, html, tool}
  var last = null;         // {id, tool}
  var fetching = false, fetchAgain = false;

  var observer = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      var id = e.target.dataset.id;
      if (e.isIntersecting) visible.add(id); else visible.delete(id);
    });
    fetchVisible();
  }, { rootMargin: "1500px 0px" });

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

  function remove(id) {
    var el = els.get(id);
    if (el) { observer.unobserve(el); el.remove(); }
    els.delete(id); shown.delete(id); want.delete(id); visible.delete(id);
  }

  function setOrder(order) {
    var keep = new Set(order);
    Array.from(els.keys()).forEach(function (id) { if (!keep.has(id)) remove(id); });
    if (!main.firstChild) {
      var frag = document.createDocumentFragment();
      order.forEach(function (id) { frag.appendChild(section(id)); });
      main.appendChild(frag);
      return;
    }
    var next = main.firstChild;
    order.forEach(function (id) {
      var el = section(id);
      if (el === next) { next = el.nextSibling; } else { main.insertBefore(el, next); }
    });
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
      badge.push("running · " + running.elapsed.toFixed(0) + " s");
      var outputs = el.querySelector(".outputs");
      if (outputs && el.dataset.runningHtml !== running.html) {
        outputs.innerHTML = running.html;
        el.dataset.runningHtml = running.html;
      }
    } else if (el.dataset.runningHtml !== undefined) {
      delete el.dataset.runningHtml;
      shown.delete(id); // show the saved outputs again
    }
    if (isLast && last.tool) badge.push((isRunning ? "" : "last: ") + last.tool);
    if (badge.length) el.dataset.badge = badge.join(" · "); else delete el.dataset.badge;
  }

  function apply(cell) {
    var el = els.get(cell.id);
    if (!el) return;
    el.innerHTML = cell.html;
    el.dataset.type = cell.type;
    el.classList.remove("pending");
    shown.set(cell.id, cell.hash);
    if (el.dataset.runningHtml !== undefined) delete el.dataset.runningHtml;
    decorate(cell.id);
  }

  function fetchVisible() {
    if (fetching) { fetchAgain = true; return; }
    var ids = [];
    visible.forEach(function (id) { if (want.has(id) && shown.get(id) !== want.get(id)) ids.push(id); });
    if (!ids.length) return;
    ids = ids.slice(0, 200);
    fetching = true;
    fetch("cells?" + base + "&ids=" + ids.map(encodeURIComponent).join(","), { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        (data.cells || []).forEach(function (c) { if (want.get(c.id) === c.hash) apply(c); });
      })
      .catch(function () { /* the stream's reconnect brings a fresh snapshot */ })
      .finally(function () {
        fetching = false;
        if (fetchAgain || ids.length === 200) { fetchAgain = false; fetchVisible(); }
      });
  }

  function follow() {
    if (!followEl.checked) return;
    var target = running ? running.id : last && last.id;
    var el = target && els.get(target);
    if (el) el.scrollIntoView({ block: "center" });
  }

  function setLast(value) {
    var old = last && last.id;
    last = value;
    if (old) decorate(old);
    if (last) decorate(last.id);
  }

  function handle(ev) {
    if (ev.type === "snapshot") {
      document.title = ev.name + " · nbmcp view";
      want = new Map(Object.entries(ev.hashes));
      setOrder(ev.order);
      showError(ev.error);
      setRunning(ev.running);
      setLast(ev.last);
      document.body.dataset.state = "live";
      fetchVisible();
    } else if (ev.type === "change") {
      (ev.deleted || []).forEach(remove);
      if (ev.order) setOrder(ev.order);
      (ev.changed || []).forEach(function (c) {
        section(c.id);
        want.set(c.id, c.hash);
        if (c.html !== undefined) apply(c);
      });
      showError(null);
      if (ev.last) setLast(ev.last);
      fetchVisible();
      follow();
    } else if (ev.type === "running") {
      setRunning(ev.running);
      if (ev.last) setLast(ev.last);
      follow();
    } else if (ev.type === "error") {
      showError(ev.message);
    }
    window.nbmcpViewUpdates = (window.nbmcpViewUpdates || 0) + 1;
  }

  function setRunning(value) {
    var old = running && running.id;
    running = value;
    if (old && (!running || running.id !== old)) decorate(old);
    if (running) decorate(running.id);
    fetchVisible();
  }

  function showError(message) {
    errorEl.hidden = !message;
    errorEl.textContent = message || "";
  }

  // An HTML output's sandboxed frame says how tall its document is; nothing else is taken from it.
  window.addEventListener("message", function (e) {
    var h = e.data && e.data.nbmcpHeight;
    if (typeof h !== "number") return;
    var frames = main.querySelectorAll("iframe.html-output");
    for (var i = 0; i < frames.length; i++) {
      if (frames[i].contentWindow === e.source) {
        frames[i].style.height = Math.min(Math.max(h, 16), 4000) + "px";
        return;
      }
    }
  });
  followEl.addEventListener("change", follow);

  var source = new EventSource("events?" + base);
  source.onopen = function () { statusEl.textContent = "live"; statusEl.className = "live"; };
  source.onerror = function () { statusEl.textContent = "reconnecting…"; statusEl.className = "down"; };
  source.onmessage = function (e) { handle(JSON.parse(e.data)); };
})();
