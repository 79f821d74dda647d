// The HTTP API form (templates/integrations/http_apis/form.html): show only the settings of the
// chosen authentication. Without JavaScript every set stays visible and the server ignores the
// ones that don't apply.
(function () {
  "use strict";

  function sync(select) {
    document.querySelectorAll("[data-http-api-fields]").forEach((fieldset) => {
      fieldset.hidden = !fieldset.dataset.httpApiFields.split(" ").includes(select.value);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const select = document.querySelector("select[data-http-api-auth]");
    if (!select) return;
    sync(select);
    select.addEventListener("change", () => sync(select));
  });
})();
