// Follows a task that has not finished: the state text updates live, and once it is final the
// page's content is fetched again and swapped in place (result or traceback appear; no reload).
(() => {
  const el = document.querySelector("[data-testid=task-state][data-sse]");
  if (!el) return;
  const source = new EventSource(el.dataset.sse);
  const refresh = async () => {
    const response = await fetch(window.location.href, {headers: {"Accept": "text/html"}});
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("main");
    const main = document.querySelector("main");
    if (fresh && main) main.replaceWith(fresh);
  };
  source.addEventListener("state", (e) => {
    const data = JSON.parse(e.data);
    el.textContent = data.state;
    el.className = "state " + data.state;
    const attempt = document.querySelector("[data-testid=task-attempt]");
    if (attempt) attempt.textContent = data.attempt;
    if (data.terminal) { source.close(); refresh(); }
  });
  source.addEventListener("gone", () => source.close());
  window.addEventListener("pagehide", () => source.close());
})();
