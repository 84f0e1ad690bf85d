// Lifeline console: the little the pages do in the browser. Everything works without it too:
// the services check every field again, and a form posts as a plain form.
"use strict";

// GB 11643 resident ID: 17 digits, a check digit (ISO 7064 MOD 11-2), a real birth date.
const ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
function residentIdProblem(value) {
  const v = value.trim().toUpperCase();
  if (v === "") return null;
  if (!/^\d{17}[\dX]$/.test(v)) return "form";
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(v[i]) * ID_WEIGHTS[i];
  if ("10X98765432"[sum % 11] !== v[17]) return "check";
  const y = Number(v.slice(6, 10)), m = Number(v.slice(10, 12)), d = Number(v.slice(12, 14));
  const born = new Date(Date.UTC(y, m - 1, d));
  if (y < 1900 || born.getUTCMonth() !== m - 1 || born.getUTCDate() !== d || born > new Date()) return "date";
  return null;
}

function showFieldError(input, message) {
  const box = document.getElementById("e-" + input.name) || input.parentElement.querySelector(".field-error");
  if (!box) return;
  box.textContent = message || "";
  box.hidden = !message;
  input.setAttribute("aria-invalid", message ? "true" : "false");
  input.closest(".field")?.classList.toggle("invalid", Boolean(message));
}

function checkId(input) {
  const problem = residentIdProblem(input.value);
  showFieldError(input, problem ? input.dataset["msg" + problem[0].toUpperCase() + problem.slice(1)] : "");
}

document.addEventListener("input", (e) => {
  const input = e.target;
  if (input.matches && input.matches("[data-check=resident-id]")) {
    // As typed: say so only once the number is complete, not at every keystroke before.
    if (input.value.trim().length >= 18 || input.getAttribute("aria-invalid") === "true") checkId(input);
  }
});
document.addEventListener("change", (e) => {
  if (e.target.matches && e.target.matches("[data-check=resident-id]")) checkId(e.target);
});

// Rows added from a <template>: "__i__" in names and ids becomes the next free index.
document.addEventListener("click", (e) => {
  const add = e.target.closest && e.target.closest("[data-add-row]");
  if (add) {
    const tpl = document.getElementById(add.dataset.addRow);
    const list = document.getElementById(add.dataset.into);
    // The next index no row uses (a row removed before leaves a gap, not a free number).
    let index = list.querySelectorAll("[data-row]").length;
    while (list.querySelector(`[data-row="${index}"]`)) index++;
    const html = tpl.innerHTML.replaceAll("__i__", String(index)).replaceAll("__n__", String(index + 1));
    list.insertAdjacentHTML("beforeend", html);
    list.lastElementChild.querySelector("input, select")?.focus();
    return;
  }
  const remove = e.target.closest && e.target.closest("[data-remove-row]");
  if (remove) remove.closest("[data-row]").remove();
});

// Live parts of a page (a payment run's progress): fetched again until the server says done.
function poll(el) {
  const every = Number(el.dataset.every || 2000);
  fetch(el.dataset.poll, { credentials: "same-origin", headers: { "accept": "text/html" } })
    .then((r) => {
      const done = r.headers.get("X-Poll-Done") === "1";
      return r.text().then((html) => {
        if (r.ok) el.innerHTML = html;
        if (!done) setTimeout(() => poll(el), every);
      });
    })
    .catch(() => setTimeout(() => poll(el), every * 2));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach((el) => setTimeout(() => poll(el), Number(el.dataset.every || 2000)));
  // Only a problem the browser finds is shown: a page shown again keeps the service's message.
  document.querySelectorAll("[data-check=resident-id]").forEach((input) => {
    if (input.value && residentIdProblem(input.value)) checkId(input);
  });
});
