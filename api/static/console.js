// Writeback Doctor console: progressive enhancement only. Every form works without this file;
// with it, a select marked data-autosubmit submits its form when it changes (the language
// picker, the overview's status filter), and forms marked data-confirm ask first.
"use strict";
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.dataset.autosubmit !== undefined && target.form) {
    target.form.requestSubmit();
  }
});
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
});
