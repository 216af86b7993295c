// The jobs this browser session started, followed live through /task/status (once a second
// while any is unfinished). Kept in sessionStorage so a reload keeps following them.
// An opened job shows its log lines (/task/log) under its row, refreshed while it is not final
// and for a few ticks after (the services' last lines reach the log just after the state).

import { jobs as fetchJobs, jobLog, JOB_FINAL } from "./api.js";
import { every, h, notice } from "./dom.js";
import { t } from "./i18n.js";

const KEY = "tingyu.jobs";
const AFTER_FINAL = 3; // log reads after a job is final

// jobid -> {lines, error, reads after final}; a job just started is opened, a row's button toggles it.
const opened = new Map();

function open(jobid) {
  if (!opened.has(jobid)) opened.set(jobid, { lines: null, error: "", after: 0 });
}

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
  open(jobid);
}

function save(list) {
  sessionStorage.setItem(KEY, JSON.stringify(list));
}

export function stateName(state) {
  return t("jobStates")[state] ?? String(state);
}

function logRow(jobid, log) {
  let body;
  if (log.error) body = h("div", { class: "notice error", role: "alert" }, log.error);
  else if (!log.lines) body = "…";
  else if (!log.lines.length) body = h("span", { class: "muted" }, t("noLines"));
  else
    body = h(
      "ol",
      { class: "loglines" },
      log.lines.map((line) =>
        h(
          "li",
          { class: `level-${line.level}` },
          `${line.time} ${line.service} ${line.level} ${line.message}`,
        ),
      ),
    );
  return h("tr", { class: "joblog", "data-log-of": jobid }, h("td", { colspan: 5 }, body));
}

// Read the log of every opened job that is not final, or became final less than AFTER_FINAL reads ago.
async function readLogs(list) {
  const states = new Map(list.map((j) => [j.jobid, j.state]));
  const due = [...opened].filter(([jobid, log]) => states.has(jobid) && log.after < AFTER_FINAL);
  await Promise.all(
    due.map(async ([jobid, log]) => {
      const final = JOB_FINAL.has(states.get(jobid));
      try {
        log.lines = await jobLog(jobid);
        log.error = "";
      } catch (exc) {
        log.error = exc.message;
      }
      if (final) log.after += 1;
    }),
  );
}

// A table of the tracked jobs of `kinds` (an op prefix filter), polled; returns stop().
export function jobPanel(into, filter = () => true) {
  const status = h("div", {});
  const table = h("div", {});
  into.replaceChildren(h("h3", {}, t("jobs")), status, table);
  let latest = [];
  const draw = (list) => {
    latest = list;
    const shown = list.filter(filter);
    const toggle = (jobid) => {
      if (opened.has(jobid)) opened.delete(jobid);
      else open(jobid);
      draw(latest);
      readLogs(latest).then(() => draw(latest));
    };
    table.replaceChildren(
      h(
        "table",
        { id: "jobs" },
        h("tr", {}, [t("job"), t("name"), t("state"), t("message"), t("log")].map((x) => h("th", {}, x))),
        shown.map((j) => [
          h(
            "tr",
            { "data-jobid": j.jobid, "data-state": j.state, class: j.state === 4 ? "bad" : "" },
            h("td", { class: "mono" }, j.jobid),
            h("td", {}, j.what),
            h("td", { class: `state s${j.state}` }, stateName(j.state)),
            h("td", {}, j.message || ""),
            h(
              "td",
              {},
              h(
                "button",
                { class: "link", "data-log-toggle": j.jobid, onclick: () => toggle(j.jobid) },
                opened.has(j.jobid) ? t("hideLog") : t("showLog"),
              ),
            ),
          ),
          opened.has(j.jobid) ? logRow(j.jobid, opened.get(j.jobid)) : null,
        ]),
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
    await readLogs(list);
    draw(list);
  });
}
