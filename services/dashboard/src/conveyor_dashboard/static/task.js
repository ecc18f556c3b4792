// Follows a task that has not finished: the state text updates live, and once it is final the
// page reloads to show the result or the traceback.
(() => {
  const el = document.querySelector("[data-testid=task-state][data-sse]");
  if (!el) return;
  const source = new EventSource(el.dataset.sse);
  source.addEventListener("state", (e) => {
    const data = JSON.parse(e.data);
    el.textContent = data.state;
    el.className = "state " + data.state;
    const attempt = document.querySelector("[data-testid=task-attempt]");
    if (attempt) attempt.textContent = data.attempt;
    if (data.terminal) { source.close(); window.location.reload(); }
  });
  source.addEventListener("gone", () => source.close());
  window.addEventListener("pagehide", () => source.close());
})();
