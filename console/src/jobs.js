// The jobs this browser session started, followed live through /task/status (once a second
// while any is unfinished). Kept in sessionStorage so a reload keeps following them.

import { jobs as fetchJobs, JOB_FINAL } from "./api.js";
import { every, h, notice } from "./dom.js";
import { t } from "./i18n.js";

const KEY = "tingyu.jobs";

export function tracked() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "[]");
  } catch {
    return [];
  }
}

export function track(jobid, what) {
  const list = tracked().filter((j) => j.jobid !== jobid);
  list.unshift({ jobid, what, state: 0, message: "" });
  sessionStorage.setItem(KEY, JSON.stringify(list.slice(0, 50)));
}

function save(list) {
  sessionStorage.setItem(KEY, JSON.stringify(list));
}

export function stateName(state) {
  return t("jobStates")[state] ?? String(state);
}

// A table of the tracked jobs of `kinds` (an op prefix filter), polled; returns stop().
export function jobPanel(into, filter = () => true) {
  const status = h("div", {});
  const table = h("div", {});
  into.replaceChildren(h("h3", {}, t("jobs")), status, table);
  const draw = (list) => {
    const shown = list.filter(filter);
    table.replaceChildren(
      h(
        "table",
        { id: "jobs" },
        h("tr", {}, [t("job"), t("name"), t("state"), t("message")].map((x) => h("th", {}, x))),
        shown.map((j) =>
          h(
            "tr",
            { "data-jobid": j.jobid, "data-state": j.state, class: j.state === 4 ? "bad" : "" },
            h("td", { class: "mono" }, j.jobid),
            h("td", {}, j.what),
            h("td", { class: `state s${j.state}` }, stateName(j.state)),
            h("td", {}, j.message || ""),
          ),
        ),
      ),
    );
  };
  return every(1000, async () => {
    const list = tracked();
    const open = list.filter((j) => !JOB_FINAL.has(j.state)).map((j) => j.jobid);
    if (open.length) {
      try {
        const states = new Map((await fetchJobs(open)).map((s) => [s.jobid, s]));
        for (const j of list) {
          const s = states.get(j.jobid);
          if (s && s.code === 200) Object.assign(j, { state: s.state, message: s.message, result: s.result });
          else if (s) Object.assign(j, { state: 4, message: s.message });
        }
        save(list);
        notice(status, "");
      } catch (exc) {
        notice(status, exc.message);
      }
    }
    draw(list);
  });
}
