// The trigger and schedule forms show only the fields that apply to the current choice.
// Loaded (without defer) right after the form, so the other choices' fields are hidden before
// the first paint.
(function () {
  "use strict";

  function showOnly(form, attribute, value) {
    form.querySelectorAll("[data-" + attribute + "]").forEach((el) => {
      el.hidden = el.dataset[attribute] !== value;
    });
  }

  const trigger = document.getElementById("trigger-form");
  if (trigger) {
    const sync = () => {
      const checked = trigger.querySelector("input[name=kind]:checked");
      showOnly(trigger, "kind", checked ? checked.value : "webhook");
    };
    trigger.addEventListener("change", sync);
    sync();
  }

  // The preset's fields or the cron expression's, and weekday/day by frequency.
  const schedule = document.getElementById("schedule-form");
  if (schedule) {
    const sync = () => {
      const mode = (schedule.querySelector("input[name=mode]:checked") || {}).value || "plain";
      showOnly(schedule, "mode", mode);
      showOnly(schedule, "frequency", schedule.querySelector("select[name=frequency]").value);
    };
    schedule.addEventListener("change", sync);
    sync();
  }
})();
