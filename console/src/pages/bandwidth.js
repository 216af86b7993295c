// Bandwidth and resources: a time range, 5-minute up/down curves for the account, an image or an
// image version, with the peak and the billed 95th percentile drawn as lines and stated as
// numbers (the API's own figures, from `summary`); CPU and memory curves of the same scope.

import * as echarts from "echarts/core";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, MarkLineComponent, TooltipComponent } from "echarts/components";
import { CanvasRenderer } from "echarts/renderers";
import { get } from "../api.js";
import { bps, h, notice } from "../dom.js";
import { t } from "../i18n.js";

echarts.use([LineChart, GridComponent, LegendComponent, MarkLineComponent, TooltipComponent, CanvasRenderer]);

const TZ_KEY = "tingyu.timezone";
const HOUR = 3600 * 1000;

// `yyyy-MM-dd HH:mm:ss` in the platform's time zone, as the contract spells times.
function wire(date, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
    })
      .formatToParts(date)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

function lineChart(el, title, series, marks) {
  const chart = echarts.getInstanceByDom(el) || echarts.init(el);
  chart.setOption(
    {
      animation: false,
      title: { text: title },
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 70, right: 150, top: 30, bottom: 30 },
      xAxis: { type: "category", data: series.time },
      yAxis: { type: "value" },
      series: series.lines.map((line, i) => ({
        name: line.name,
        type: "line",
        showSymbol: false,
        data: line.data,
        markLine: {
          symbol: "none",
          label: { formatter: "{b}: {c}", position: "end" },
          data: (marks[i] || []).map(([name, value]) => ({ name, yAxis: value })),
        },
      })),
    },
    true,
  );
  return chart;
}

export default function bandwidth(root) {
  const status = h("div", { id: "bandwidth-status" });
  const timezone = h("input", { id: "timezone", value: sessionStorage.getItem(TZ_KEY) || "Asia/Shanghai", size: 16 });
  const start = h("input", { id: "startDate", size: 20 });
  const end = h("input", { id: "endDate", size: 20 });
  const scope = h(
    "select",
    { id: "scope" },
    h("option", { value: "account" }, t("account")),
    h("option", { value: "image" }, t("byImage")),
    h("option", { value: "version" }, t("byVersion")),
  );
  const image = h("input", { id: "scope-image", list: "image-names", size: 40, placeholder: "name / name:version" });
  const names = h("datalist", { id: "image-names" });
  const figures = h("div", { id: "figures", class: "figures" });
  const bwEl = h("div", { id: "bandwidth-chart", class: "chart" });
  const cpuEl = h("div", { id: "cpu-chart", class: "chart small" });
  const memEl = h("div", { id: "memory-chart", class: "chart small" });
  window.tingyuCharts = {};

  const preset = (ms) => {
    const now = new Date();
    start.value = wire(new Date(now.getTime() - ms), timezone.value);
    end.value = wire(now, timezone.value);
    show();
  };

  let asked = 0; // an answer to an older question is dropped when it comes late
  const show = async () => {
    const question = ++asked;
    sessionStorage.setItem(TZ_KEY, timezone.value);
    const dates = { startDate: start.value.trim(), endDate: end.value.trim() };
    const which = scope.value;
    const named = image.value.trim();
    const bwPath = { account: "getAllNode", image: "getByImage", version: "getByImageVersion" }[which];
    const bwParams = which === "image" ? { image: named } : which === "version" ? { imageVersion: named } : {};
    const resPath = which === "version" ? "getByImageVersion" : "getByImage";
    try {
      const [bw, res] = await Promise.all([
        get(`/info/bandWith/${bwPath}`, { ...dates, ...bwParams }),
        get(`/info/resourceUse/${resPath}`, { ...dates, ...bwParams }),
      ]);
      if (question !== asked) return;
      const s = bw.summary;
      notice(status, bw.info.length ? "" : t("noData"), "info");
      figures.replaceChildren(
        h("span", { class: "figure", id: "peak-up", "data-value": s.peakUpbps }, `${t("peak")} ${t("up")} ${bps(s.peakUpbps)}`),
        h("span", { class: "figure", id: "p95-up", "data-value": s.p95Upbps }, `${t("p95")} ${t("up")} ${bps(s.p95Upbps)}`),
        h("span", { class: "figure", id: "peak-down", "data-value": s.peakDownbps }, `${t("peak")} ${t("down")} ${bps(s.peakDownbps)}`),
        h("span", { class: "figure", id: "p95-down", "data-value": s.p95Downbps }, `${t("p95")} ${t("down")} ${bps(s.p95Downbps)}`),
      );
      const time = bw.info.map((p) => p.time);
      window.tingyuCharts.bandwidth = lineChart(
        bwEl,
        `${t("bandwidthChart")} (bps)`,
        {
          time,
          lines: [
            { name: t("up"), data: bw.info.map((p) => p.upbps) },
            { name: t("down"), data: bw.info.map((p) => p.downbps) },
          ],
        },
        [
          [["P95", s.p95Upbps], [t("peak"), s.peakUpbps]],
          [["P95", s.p95Downbps], [t("peak"), s.peakDownbps]],
        ],
      );
      const rs = res.summary;
      const rtime = res.info.map((p) => p.time);
      window.tingyuCharts.cpu = lineChart(
        cpuEl,
        t("cpuChart"),
        { time: rtime, lines: [{ name: t("cpu"), data: res.info.map((p) => p.cpu) }] },
        [[["P95", rs.p95Cpu], [t("peak"), rs.peakCpu]]],
      );
      window.tingyuCharts.memory = lineChart(
        memEl,
        t("memoryChart"),
        { time: rtime, lines: [{ name: t("memory"), data: res.info.map((p) => p.memory) }] },
        [[["P95", rs.p95Memory], [t("peak"), rs.peakMemory]]],
      );
      root.dataset.shown = `${which}:${named}`;
      root.dataset.range = `${dates.startDate}|${dates.endDate}`; // which question the charts answer
    } catch (exc) {
      if (question === asked) notice(status, exc.message);
    }
  };

  get("/image/search", { wordKey: "" })
    .then((body) =>
      names.replaceChildren(
        ...(body.data || []).flatMap((img) => [
          h("option", { value: img.name }),
          ...img.versions.map((v) => h("option", { value: `${img.name}:${v.version}` })),
        ]),
      ),
    )
    .catch(() => {});

  root.replaceChildren(
    h("h2", {}, t("bandwidth")),
    h(
      "form",
      { class: "form inline", id: "range-form", onsubmit: (e) => { e.preventDefault(); show(); } },
      h("label", { for: "startDate" }, t("from"), start),
      h("label", { for: "endDate" }, t("to"), end),
      h("label", { for: "timezone" }, t("timezone"), timezone),
      h("span", { class: "presets" }, `${t("last")}: `,
        [[1, "h"], [6, "h"], [24, "h"], [7, "d"], [30, "d"]].map(([n, unit]) =>
          h("button", { type: "button", class: "link", id: `last-${n}${unit}`, onclick: () => preset(n * (unit === "h" ? HOUR : 24 * HOUR)) },
            `${n} ${unit === "h" ? t("hours") : t("days")}`),
        )),
      h("label", { for: "scope" }, t("scope"), scope),
      image,
      names,
      h("button", { id: "show", type: "submit" }, t("show")),
    ),
    status,
    figures,
    bwEl,
    h("div", { class: "pair" }, cpuEl, memEl),
  );
  const resize = () => Object.values(window.tingyuCharts).forEach((c) => c.resize());
  window.addEventListener("resize", resize);
  preset(6 * HOUR);
  return () => {
    window.removeEventListener("resize", resize);
    for (const el of [bwEl, cpuEl, memEl]) echarts.getInstanceByDom(el)?.dispose();
  };
}
