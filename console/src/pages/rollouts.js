// Rollouts: start a canary (updateByInherit) or follow one by area, ISP and image, and watch each as a
// live bar read from GET /container/rollout (its last run: status, target, updated, in flight,
// failed, pending, members). Pause / resume / abort call PUT /container/rollout/<action>; the API
// judges every click (a finished run, a token without the operator role or the area) and its refusal
// is shown as it comes. Machines waiting on NotReady are counted only in the run's job result.

import { call, get, jobs as fetchJobs } from "../api.js";
import { every, h, notice } from "../dom.js";
import { t } from "../i18n.js";

const KEY = "tingyu.rollouts";
const ACTIONS = ["pause", "resume", "abort"];
const OPEN = new Set(["running", "paused"]);

const keyOf = (r) => `${r.area}|${r.operator}|${r.image}`;

function remembered() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "[]").filter((r) => r.area && r.operator && r.image);
  } catch {
    return [];
  }
}

// One entry per (area, operator, image): the API keeps one rollout, its last run, for each.
function remember(target) {
  const all = remembered().filter((r) => keyOf(r) !== keyOf(target));
  all.unshift(target);
  sessionStorage.setItem(KEY, JSON.stringify(all.slice(0, 20)));
}

function statusName(status) {
  return t("rolloutStates")[status] ?? status;
}

// A card drawn once per rollout and updated in place on every poll, so its buttons stay put.
function card(target) {
  const params = { area: target.area, operator: target.operator, image: target.image };
  const title = h("span", {}, `${target.area} · ${target.operator} · ${target.image}`);
  const status = h("span", { class: "rollout-status" });
  const part = (cls) => h("div", { class: `part ${cls}` });
  const parts = { updated: part("updated"), inflight: part("inflight"), failed: part("failed") };
  const bar = h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 0, "aria-valuenow": 0 },
    parts.updated,
    parts.inflight,
    parts.failed,
  );
  const figures = h("div", { class: "figures" });
  const message = h("div", { class: "hint rollout-message" });
  const answer = h("div", { class: "rollout-answer" });
  const problem = h("div", { class: "rollout-problem" });
  const members = h("tbody", {});
  const root = h(
    "div",
    { class: "rollout", "data-key": keyOf(target), "data-status": "", "data-polls": 0 },
    h("div", { class: "title" }, title, " ", status),
    bar,
    figures,
    h(
      "div",
      { class: "controls" },
      ACTIONS.map((action) =>
        h("button", { type: "button", class: `rollout-${action}`, onclick: () => steer(action) }, t(action)),
      ),
    ),
    answer,
    problem,
    message,
    h(
      "details",
      {},
      h("summary", {}, t("members")),
      h(
        "table",
        { class: "members" },
        h("thead", {}, h("tr", {}, [t("name"), t("machine"), t("state"), t("message")].map((x) => h("th", {}, x)))),
        members,
      ),
    ),
  );
  const buttons = () => root.querySelectorAll(".controls button");

  async function steer(action) {
    if (action === "abort" && !window.confirm(`${t("confirmAbort")} ${target.image}`)) return;
    buttons().forEach((b) => (b.disabled = true));
    try {
      const body = await call("PUT", `/container/rollout/${action}`, { params });
      notice(answer, `${t(action)}: ${statusName(body.data.status)}`, "info");
      show(body.data);
    } catch (exc) {
      notice(answer, exc.message);
    } finally {
      buttons().forEach((b) => (b.disabled = false));
    }
  }

  // The rollout's last run as the API gives it, with the waiting count from its job when known.
  function show(view, waiting) {
    root.dataset.status = view.status;
    root.dataset.version = view.imageversion;
    root.dataset.jobids = view.jobids.join(",");
    status.className = `rollout-status ${view.status}`;
    status.textContent = statusName(view.status);
    title.textContent = `${view.area} · ${view.operator} · ${view.image} → ${view.imageversion} (${view.percent}%)`;
    const whole = Math.max(view.target, 1);
    for (const [name, el] of Object.entries(parts)) el.style.width = `${(100 * view[name]) / whole}%`;
    bar.setAttribute("aria-valuemax", view.target);
    bar.setAttribute("aria-valuenow", view.updated);
    const shown = [
      ["target", "target", view.target],
      ["updated", "updated", view.updated],
      // An ended run follows no more upgrades: those it had issued are counted, not followed.
      ["inflight", OPEN.has(view.status) ? "inflight" : "issuedUnfollowed", view.inflight],
      ["failed", "failed", view.failed],
      ["pending", "pending", view.pending],
      ["total", "rolloutTotal", view.total],
    ];
    if (waiting !== undefined) shown.push(["waiting", "waiting", waiting]);
    figures.replaceChildren(
      ...shown.map(([key, label, n]) =>
        h("span", { class: `figure ${key}`, "data-key": key, "data-value": n }, `${t(label)} ${n}`),
      ),
    );
    message.textContent = view.message || "";
    members.replaceChildren(
      ...view.members.map((m) =>
        h(
          "tr",
          { "data-name": m.deploymentname, "data-state": m.state },
          h("td", {}, m.deploymentname),
          h("td", { class: "mono" }, m.uuid),
          h("td", { class: `member ${m.state}` }, t("memberStates")[m.state] ?? m.state),
          h("td", {}, m.message),
        ),
      ),
    );
  }

  // One poll: the view, or the API's error (TY0033 until the deployer has recorded a new call).
  async function poll() {
    try {
      const view = (await get("/container/rollout", params)).data;
      const last = view.jobids[view.jobids.length - 1];
      const job = last ? (await fetchJobs([last]))[0] : undefined;
      show(view, job && job.result ? job.result.waiting_notready : undefined);
      notice(problem, "");
    } catch (exc) {
      notice(problem, exc.message);
    }
    root.dataset.polls = Number(root.dataset.polls) + 1;
  }

  return { root, poll };
}

export default function rollouts(root) {
  const status = h("div", { id: "rollout-status" });
  const list = h("div", { id: "rollouts" });
  const cards = new Map();
  const input = (id, label, attrs = {}) => h("label", { for: id }, label, h("input", { id, name: id, ...attrs }));
  const form = h(
    "form",
    { id: "rollout-form", class: "form" },
    input("area", t("area"), { required: true }),
    input("operator", t("operator"), { required: true }),
    input("image", t("image"), { required: true, size: 40 }),
    input("imageversion", t("version"), { required: true }),
    input("percent", t("percent"), { type: "number", min: 1, max: 100, value: 10 }),
    h("button", { id: "start-rollout", type: "submit" }, t("startRollout")),
    h("button", { id: "follow-rollout", type: "button", class: "link" }, t("followRollout")),
    h("p", { class: "hint" }, t("rolloutHint")),
  );
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  const target = () => ({ area: value("area"), operator: value("operator"), image: value("image") });
  const draw = () => {
    const wanted = remembered();
    for (const r of wanted) if (!cards.has(keyOf(r))) cards.set(keyOf(r), card(r));
    list.replaceChildren(...wanted.map((r) => cards.get(keyOf(r)).root));
    return wanted.map((r) => cards.get(keyOf(r)));
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const request = { ...target(), imageversion: value("imageversion"), percent: Number(value("percent")) };
    try {
      const body = await call("PUT", "/container/updateByInherit", { json: request });
      remember(target());
      draw();
      notice(status, `${body.msg}: ${body.jobid}`, "info");
    } catch (exc) {
      notice(status, exc.message);
    }
  });
  form.querySelector("#follow-rollout").addEventListener("click", () => {
    const wanted = target();
    if (!wanted.area || !wanted.operator || !wanted.image) {
      notice(status, t("followNeeds"));
      return;
    }
    remember(wanted);
    draw();
    notice(status, "");
  });
  root.replaceChildren(h("h2", {}, t("rollouts")), form, status, list);
  return every(1000, async () => {
    await Promise.all(draw().map((c) => c.poll()));
  });
}
