// The identity provider form (templates/accounts/sso_form.html): show only the fields of the chosen
// protocol. Without JavaScript both sets stay visible and the server ignores the other protocol's.
(function () {
  "use strict";

  function sync(select) {
    document.querySelectorAll("[data-sso-fields]").forEach((fieldset) => {
      fieldset.hidden = fieldset.dataset.ssoFields !== select.value;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const select = document.querySelector("select[data-sso-kind]");
    if (!select) return;
    sync(select);
    select.addEventListener("change", () => sync(select));
  });
})();
