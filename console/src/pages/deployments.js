// Deployments: every container with its state, image, version and machine; create / update /
// start / stop / restart / delete through the API (its validation, its messages); the jobs live.

import { call, get } from "../api.js";
import { every, h, notice } from "../dom.js";
import { t } from "../i18n.js";
import { jobPanel, track } from "../jobs.js";

function field(id, label, attrs = {}) {
  return h("label", { for: id }, label, h("input", { id, name: id, ...attrs }));
}

function envLines(text) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const at = line.indexOf("=");
      return at < 0 ? { key: line, value: "" } : { key: line.slice(0, at), value: line.slice(at + 1) };
    });
}

// The answer of a write: each item's code and message, its job followed.
function followed(body, status, what) {
  const lines = [];
  for (const item of body.data || []) {
    if (item.jobid) track(item.jobid, `${what} ${item.deploymentname}`);
    lines.push(`${item.deploymentname}: ${item.code === 200 ? "OK" : item.code} ${item.message || ""}`);
  }
  notice(status, `${body.msg}${lines.length ? ` — ${lines.join("; ")}` : ""}`, "info");
}

export default function deployments(root) {
  const status = h("div", {});
  const formStatus = h("div", { id: "form-status" });
  const listing = h("div", {});
  const machines = h("select", { id: "uuid", name: "uuid" });
  const env = h("textarea", { id: "env", rows: 3, cols: 40 });
  const form = h(
    "form",
    { id: "container-form", class: "form" },
    h("h3", {}, t("newContainer")),
    h("label", { for: "uuid" }, t("machine"), machines),
    field("deploymentname", t("name"), { required: true, placeholder: "demo1" }),
    field("image", t("image"), { required: true, size: 40 }),
    field("imageversion", t("version")),
    h("label", { for: "env" }, t("env"), env),
    field("requestscpu", t("requestsCpu"), { type: "number", step: "0.01", value: "0" }),
    field("limitscpu", t("limitsCpu"), { type: "number", step: "0.01", value: "0" }),
    field("requestsmemory", t("requestsMemory"), { type: "number", value: "0" }),
    field("limitsmemory", t("limitsMemory"), { type: "number", value: "0" }),
    h(
      "div",
      { class: "buttons" },
      h("button", { id: "create", type: "submit", value: "create" }, t("create")),
      h("button", { id: "update", type: "submit", value: "update" }, t("update")),
    ),
    formStatus,
  );
  const value = (id) => form.querySelector(`#${id}`).value.trim();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const update = event.submitter && event.submitter.value === "update";
    const item = {
      uuid: machines.value,
      deploymentname: value("deploymentname"),
      image: value("image"),
      imageversion: value("imageversion"),
      env: envLines(env.value),
      volumes: [],
      requestscpu: Number(value("requestscpu")) || 0,
      limitscpu: Number(value("limitscpu")) || 0,
      requestsmemory: Number(value("requestsmemory")) || 0,
      limitsmemory: Number(value("limitsmemory")) || 0,
    };
    try {
      const body = update
        ? await call("PUT", "/container/updateByName", { json: [item] })
        : await call("POST", "/container/create", { json: [item] });
      followed(body, formStatus, update ? t("update") : t("create"));
    } catch (exc) {
      notice(formStatus, exc.message);
    }
  });

  const act = async (verb, name) => {
    if (verb === "delete" && !window.confirm(`${t("confirmDelete")} ${name}`)) return;
    try {
      const method = verb === "delete" ? "DELETE" : "POST";
      followed(await call(method, `/container/${verb}`, { params: { name } }), status, t(verb));
    } catch (exc) {
      notice(status, exc.message);
    }
  };
  const edit = (c) => {
    machines.value = c.uuid;
    for (const id of ["deploymentname", "imageversion", "requestscpu", "limitscpu", "requestsmemory", "limitsmemory"]) {
      form.querySelector(`#${id}`).value = c[id] ?? "";
    }
    form.querySelector("#image").value = c.imagename;
    env.value = (c.env || []).map((e) => `${e.key}=${e.value}`).join("\n");
  };

  const jobs = h("section", { class: "detail" });
  root.replaceChildren(h("h2", {}, t("deployments")), status, listing, form, jobs);
  const stopJobs = jobPanel(jobs);
  const stopList = every(3000, async () => {
    try {
      const nodes = (await get("/node/list")).data || [];
      if (machines.options.length !== nodes.length) {
        const chosen = machines.value;
        machines.replaceChildren(
          ...nodes.map((n) => h("option", { value: n.uuid }, `${n.nodename} (${n.status}) ${n.uuid}`)),
        );
        if (chosen) machines.value = chosen;
      }
      const rows = [];
      for (const node of nodes) {
        for (const c of (await get("/container/list", { uuid: node.uuid })).data || []) rows.push([node, c]);
      }
      listing.replaceChildren(
        h(
          "table",
          { id: "containers" },
          h("tr", {}, [t("name"), t("state"), t("image"), t("version"), t("machine"), t("actions")].map((x) => h("th", {}, x))),
          rows.map(([node, c]) => {
            const pod = (c.podinfo || [])[0] || {};
            return h(
              "tr",
              { "data-name": c.deploymentname, class: pod.podstate === "Failed" ? "bad" : "" },
              h("td", {}, c.deploymentname),
              h("td", { class: "state", title: pod.message || "" }, pod.podstate || c.desiredstate),
              h("td", {}, c.imagename),
              h("td", {}, c.imageversion),
              h("td", { class: node.status === "Ready" ? "" : "notready" }, node.nodename),
              h(
                "td",
                { class: "buttons" },
                h("button", { type: "button", onclick: () => edit(c) }, t("edit")),
                ["start", "stop", "restart", "delete"].map((verb) =>
                  h("button", { type: "button", class: verb, onclick: () => act(verb, c.deploymentname) }, t(verb)),
                ),
              ),
            );
          }),
        ),
      );
    } catch (exc) {
      notice(status, exc.message);
    }
  });
  return () => {
    stopJobs();
    stopList();
  };
}
