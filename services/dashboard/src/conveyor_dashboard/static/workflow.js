// The workflow page. Draws the graph's edges: CSS lays the columns out, and each edge the server
// listed (data-edges: pairs of element ids) becomes an SVG curve from the right of one element to
// the left of the other. A running workflow is followed (server-sent events): each changed node's
// state and task link update in place, with the counts and progress; once the workflow ends the
// page's content is fetched again and swapped in (its result or error appear; no reload).
(() => {
  const SVG = "http://www.w3.org/2000/svg";

  const drawEdges = () => {
    const graph = document.querySelector("[data-graph]");
    if (!graph) return;
    const svg = graph.querySelector("svg.edges");
    const edges = JSON.parse(graph.dataset.edges || "[]");
    const box = graph.getBoundingClientRect();
    const dx = graph.scrollLeft - box.left - graph.clientLeft;
    const dy = graph.scrollTop - box.top - graph.clientTop;
    for (const old of svg.querySelectorAll("path.edge")) old.remove();
    for (const [from, to] of edges) {
      const a = document.getElementById(from);
      const b = document.getElementById(to);
      if (!a || !b) continue;
      const ra = a.getBoundingClientRect();
      const rb = b.getBoundingClientRect();
      const x1 = ra.right + dx, y1 = ra.top + ra.height / 2 + dy;
      const x2 = rb.left + dx, y2 = rb.top + rb.height / 2 + dy;
      const bend = Math.max(16, (x2 - x1) / 2);
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("class", "edge");
      path.setAttribute("d", `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`);
      path.setAttribute("marker-end", "url(#arrow)");
      svg.appendChild(path);
    }
  };

  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawEdges(); });
  };

  // The same markup as the template's state_counts macro.
  const fillCounts = (el, pairs) => {
    if (!el) return;
    el.replaceChildren();
    pairs.forEach(([state, n], i) => {
      if (i) el.append(" · ");
      const span = document.createElement("span");
      span.className = "count";
      span.dataset.state = state;
      const b = document.createElement("b");
      b.textContent = n;
      span.append(b, " " + state);
      el.append(span);
    });
  };

  const showNode = (key, state, taskId) => {
    for (const el of document.querySelectorAll(`[data-node="${CSS.escape(key)}"]`)) {
      el.dataset.state = state;
      if (el.dataset.label) el.title = `${el.dataset.label} · ${state}`;
      const text = el.querySelector("[data-testid=node-state]");
      if (text) { text.textContent = state; text.className = "state " + state; }
      if (!taskId) continue;
      const href = "/tasks/" + encodeURIComponent(taskId);
      if (el.classList.contains("sq")) el.href = href;
      const link = el.querySelector("a[data-task-link]");
      if (link) {
        link.href = href;
        link.hidden = false;
        if (link.dataset.taskLink === "id") link.textContent = taskId;
      }
      const waiting = el.querySelector("[data-not-submitted]");
      if (waiting) waiting.hidden = true;
    }
  };

  const refresh = async () => {
    const response = await fetch(window.location.href, {headers: {"Accept": "text/html"}});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("main");
    const main = document.querySelector("main");
    if (!fresh || !main) return;
    fresh.prepend(...main.querySelectorAll("[data-testid=flash]"));  // shown once: keep what the action said
    main.replaceWith(fresh);
    setup();
  };

  const follow = () => {
    const el = document.querySelector("[data-testid=workflow-state][data-sse]");
    if (!el) return;
    const source = new EventSource(el.dataset.sse);
    source.addEventListener("workflow", (e) => {
      const data = JSON.parse(e.data);
      for (const [key, state, taskId] of data.nodes) showNode(key, state, taskId);
      for (const [group, pairs] of Object.entries(data.groups)) {
        fillCounts(document.querySelector(`#${CSS.escape(group)} [data-testid=group-counts]`), pairs);
      }
      fillCounts(document.querySelector("[data-testid=workflow-counts]"), data.counts);
      const progress = document.querySelector("[data-testid=workflow-progress]");
      if (progress) progress.textContent = `${data.finished} of ${data.total}`;
      el.textContent = data.state;
      el.className = "state " + data.state;
      el.dataset.state = data.state;
      el.dataset.pushes = String((Number(el.dataset.pushes) || 0) + 1);  // for tests and the curious
      redraw();
      if (data.terminal || String(data.run) !== document.querySelector("[data-testid=workflow-run]").textContent) {
        source.close();
        refresh();
      }
    });
    source.addEventListener("gone", (e) => {
      source.close();
      const note = document.createElement("p");
      note.className = "flash error";
      note.dataset.testid = "live-note";
      note.textContent = "Live updates stopped (" + JSON.parse(e.data).error + "): reload the page.";
      el.closest("p").after(note);
    });
    window.addEventListener("pagehide", () => source.close(), {once: true});
  };

  const setup = () => { drawEdges(); follow(); };
  setup();
  window.addEventListener("resize", redraw);
  if (document.fonts) document.fonts.ready.then(redraw);
})();
