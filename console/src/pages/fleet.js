// Fleet: machines by area × ISP × status, drill down to the list, search, one machine's facts
// and containers. NotReady machines stand out (red rows, red counts).

import { get } from "../api.js";
import { every, h, notice } from "../dom.js";
import { t } from "../i18n.js";

function ips(node) {
  try {
    return JSON.parse(node.eth || "[]").map((nic) => nic.IP).filter(Boolean);
  } catch {
    return [];
  }
}

function matches(node, word) {
  if (!word) return true;
  const hay = [node.uuid, node.nodename, node.address, ...ips(node)].join(" ").toLowerCase();
  return hay.includes(word.toLowerCase());
}

function matrix(nodes, pick) {
  const areas = [...new Set(nodes.map((n) => n.area))].sort();
  const operators = [...new Set(nodes.map((n) => n.operator))].sort();
  const count = (area, operator, status) =>
    nodes.filter(
      (n) =>
        (!area || n.area === area) && (!operator || n.operator === operator) && (!status || n.status === status),
    ).length;
  const cell = (area, operator) => {
    const ready = count(area, operator, "Ready");
    const notReady = count(area, operator, "NotReady");
    return h(
      "td",
      { class: "cell" },
      h("a", { href: "#fleet", class: "ready", onclick: (e) => pick(e, area, operator, "Ready") }, `${ready}`),
      " / ",
      h(
        "a",
        { href: "#fleet", class: notReady ? "notready" : "", onclick: (e) => pick(e, area, operator, "NotReady") },
        `${notReady}`,
      ),
    );
  };
  return h(
    "table",
    { id: "fleet-matrix", class: "matrix" },
    h("caption", {}, `${t("area")} × ${t("operator")} (Ready / NotReady)`),
    h("tr", {}, h("th", {}, ""), operators.map((o) => h("th", {}, o)), h("th", {}, t("total"))),
    areas.map((area) => h("tr", {}, h("th", {}, area), operators.map((o) => cell(area, o)), cell(area, ""))),
    h("tr", {}, h("th", {}, t("total")), operators.map((o) => cell("", o)), cell("", "")),
  );
}

async function details(node, into) {
  into.replaceChildren(h("p", {}, t("loading")));
  let disks = [];
  try {
    disks = JSON.parse(node.diskinfo || "[]");
  } catch {
    disks = [];
  }
  const facts = h(
    "dl",
    { class: "facts" },
    [
      ["uuid", node.uuid],
      [t("nodename"), node.nodename],
      [t("status"), node.status],
      [t("heartbeat"), node.heartbeattime],
      [`${t("area")} / ${t("operator")}`, `${node.area} / ${node.operator}`],
      [t("cpu"), node.cpu],
      [t("memory"), `${node.memory} MiB`],
      [t("os"), `${node.systemos} ${node.osimage}`],
      [t("kernel"), node.kernelversion],
      [t("arch"), node.architecture],
      [t("nics"), ips(node).join(", ")],
      [t("disks"), disks.map((d) => `${d.Name} ${d.Use}/${d.Size} GiB`).join(", ")],
    ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v ?? ""))]),
  );
  const containers = h("div", {});
  into.replaceChildren(h("h3", {}, `${t("facts")}: ${node.nodename}`), facts, h("h3", {}, t("containers")), containers);
  try {
    const body = await get("/container/list", { uuid: node.uuid });
    const rows = body.data || [];
    containers.replaceChildren(
      rows.length
        ? h(
            "table",
            { id: "machine-containers" },
            h("tr", {}, [t("name"), t("image"), t("version"), t("state")].map((x) => h("th", {}, x))),
            rows.map((c) =>
              h(
                "tr",
                {},
                h("td", {}, c.deploymentname),
                h("td", {}, c.imagename),
                h("td", {}, c.imageversion),
                h("td", {}, (c.podinfo[0] || {}).podstate || c.desiredstate),
              ),
            ),
          )
        : h("p", {}, t("noContainers")),
    );
  } catch (exc) {
    notice(containers, exc.message);
  }
}

export default function fleet(root) {
  const status = h("div", {});
  const search = h("input", { id: "fleet-search", type: "search", placeholder: t("search"), size: 40 });
  const filterLine = h("span", { class: "filter" });
  const top = h("div", {});
  const list = h("div", {});
  const detail = h("section", { id: "machine-detail", class: "detail" });
  let nodes = [];
  let filter = { area: "", operator: "", status: "" };

  const drawList = () => {
    const shown = nodes.filter(
      (n) =>
        matches(n, search.value.trim()) &&
        (!filter.area || n.area === filter.area) &&
        (!filter.operator || n.operator === filter.operator) &&
        (!filter.status || n.status === filter.status),
    );
    filterLine.textContent = [filter.area, filter.operator, filter.status].filter(Boolean).join(" · ") || t("all");
    list.replaceChildren(
      h(
        "table",
        { id: "fleet-list" },
        h("tr", {}, ["uuid", t("nodename"), t("area"), t("operator"), t("address"), t("status"), t("heartbeat")].map((x) => h("th", {}, x))),
        shown.map((n) =>
          h(
            "tr",
            { class: n.status === "Ready" ? "" : "bad", "data-uuid": n.uuid, onclick: () => details(n, detail) },
            h("td", { class: "mono" }, n.uuid),
            h("td", {}, n.nodename),
            h("td", {}, n.area),
            h("td", {}, n.operator),
            h("td", {}, n.address || ips(n)[0] || ""),
            h("td", { class: n.status === "Ready" ? "ok" : "notready" }, n.status),
            h("td", {}, n.heartbeattime),
          ),
        ),
      ),
    );
  };
  const pick = (event, area, operator, state) => {
    event.preventDefault();
    filter = { area, operator, status: state };
    drawList();
  };
  search.addEventListener("input", drawList);
  root.replaceChildren(
    h("h2", {}, t("fleet")),
    status,
    top,
    h("h3", {}, t("machines"), " ", filterLine, " ", h("button", { type: "button", class: "link", onclick: () => { filter = { area: "", operator: "", status: "" }; drawList(); } }, t("all"))),
    search,
    list,
    detail,
  );
  return every(5000, async () => {
    try {
      nodes = (await get("/node/list")).data || [];
      notice(status, "");
      top.replaceChildren(matrix(nodes, pick));
      drawList();
    } catch (exc) {
      notice(status, exc.message);
    }
  });
}

