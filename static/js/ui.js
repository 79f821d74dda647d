// Small behaviours every page may use, wired by data attributes instead of inline handlers so the
// Content-Security-Policy can forbid inline script (script-src 'self') and inline style.
//
//   <form data-confirm="Really?">            asks first; cancelling stops the submit
//   <select data-autosubmit>                  submits its form when the choice changes
//   <input data-select-on-focus>              selects its text when focused
//   <button data-copy-target="element-id">   copies that element's value, then says "Copied"
//   <span data-width="42%"> / data-height    sizes meters and bars (CSSOM is allowed by the CSP;
//                                             style="" attributes are not)
(function () {
  "use strict";

  document.addEventListener("submit", (event) => {
    const form = event.target.closest && event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
  });

  document.addEventListener("change", (event) => {
    const field = event.target;
    if (field.matches && field.matches("[data-autosubmit]") && field.form) field.form.submit();
  });

  document.addEventListener("focusin", (event) => {
    const field = event.target;
    if (field.matches && field.matches("[data-select-on-focus]")) field.select();
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-copy-target]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copyTarget);
    if (!source) return;
    navigator.clipboard.writeText(source.value);
    button.textContent = "Copied";
  });

  function size() {
    document.querySelectorAll("[data-width]").forEach((el) => { el.style.width = el.dataset.width; });
    document.querySelectorAll("[data-height]").forEach((el) => { el.style.height = el.dataset.height; });
  }

  size();
  document.addEventListener("htmx:afterSettle", size);
})();
