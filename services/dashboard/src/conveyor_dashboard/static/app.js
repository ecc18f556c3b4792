// Confirmation for destructive actions: a form or button with data-confirm asks first.
document.addEventListener("submit", (e) => {
  const form = e.target;
  const button = e.submitter;
  const text = (button && button.dataset.confirm) || form.dataset.confirm;
  if (text && !window.confirm(text)) e.preventDefault();
});
