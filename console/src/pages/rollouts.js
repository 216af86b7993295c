// Rollouts: start a canary (updateByInherit) and watch each rollout's progress as a live bar,
// read from its job's result in /task/status (target, updated, in flight, failed, waiting).

import { call, jobs as fetchJobs } from "../api.js";
import { every, h, notice } from "../dom.js";
import { t } from "../i18n.js";
import { stateName } from "../jobs.js";

const KEY = "tingyu.rollouts";

function remembered() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "[]");
  } catch {
    return [];
  }
}

function bar(result) {
  const target = Math.max(result.target || 0, 1);
  const part = (n, cls) => h("div", { class: `part ${cls}`, style: `width: ${(100 * (n || 0)) / target}%` });
  return h(
    "div",
    { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": result.target || 0, "aria-valuenow": result.updated || 0 },
    part(result.updated, "updated"),
    part(result.inflight, "inflight"),
    part(result.failed, "failed"),
  );
}

function figures(result) {
  return [
    ["target", result.target],
    ["updated", result.updated],
    ["inflight", result.inflight],
    ["failed", result.failed],
    ["pending", result.pending],
    ["waiting", result.waiting_notready],
  ].map(([key, n]) => h("span", { class: `figure ${key}`, "data-key": key }, `${t(key)} ${n ?? 0}`));
}

export default function rollouts(root) {
  const status = h("div", { id: "rollout-status" });
  const pollStatus = h("div", {});
  const list = h("div", { id: "rollouts" });
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
    h("p", { class: "hint" }, t("rolloutHint")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const request = {
      area: value("area"),
      operator: value("operator"),
      image: value("image"),
      imageversion: value("imageversion"),
      percent: Number(value("percent")),
    };
    try {
      const body = await call("PUT", "/container/updateByInherit", { json: request });
      const all = remembered().filter((r) => r.jobid !== body.jobid);
      all.unshift({ jobid: body.jobid, request });
      sessionStorage.setItem(KEY, JSON.stringify(all.slice(0, 20)));
      notice(status, `${body.msg}: ${body.jobid}`, "info");
    } catch (exc) {
      notice(status, exc.message);
    }
  });
  root.replaceChildren(h("h2", {}, t("rollouts")), form, status, pollStatus, list);
  return every(1000, async () => {
    const all = remembered();
    if (!all.length) return;
    try {
      const states = new Map((await fetchJobs(all.map((r) => r.jobid))).map((s) => [s.jobid, s]));
      list.replaceChildren(
        ...all.map(({ jobid, request }) => {
          const s = states.get(jobid) || {};
          const result = s.result || {};
          return h(
            "div",
            { class: "rollout", "data-jobid": jobid, "data-state": s.state ?? "" },
            h(
              "div",
              { class: "title" },
              `${request.area} · ${request.operator} · ${request.image} → ${request.imageversion} (${request.percent}%) `,
              h("span", { class: `state s${s.state}` }, s.code === 200 ? stateName(s.state) : s.message || ""),
            ),
            bar(result),
            h("div", { class: "figures" }, figures(result)),
            s.message && s.code === 200 ? h("div", { class: "hint" }, s.message) : "",
          );
        }),
      );
      notice(pollStatus, "");
    } catch (exc) {
      notice(pollStatus, exc.message);
    }
  });
}
