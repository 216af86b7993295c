// Images: the catalog with versions and sizes, an upload with a progress bar (then its push job
// live), deletes (the API refuses one in use and names the containers using it).

import { call, get, upload } from "../api.js";
import { bytes, every, h, notice } from "../dom.js";
import { t } from "../i18n.js";
import { jobPanel, track } from "../jobs.js";

export default function images(root) {
  const status = h("div", { id: "image-status" });
  const catalog = h("div", {});
  const progress = h("progress", { id: "upload-progress", max: 100, value: 0 });
  const progressText = h("span", { id: "upload-percent" }, "");
  const file = h("input", { id: "file", type: "file", accept: ".tar,application/x-tar" });
  const form = h(
    "form",
    { id: "upload-form", class: "form" },
    h("h3", {}, t("upload")),
    h("label", { for: "image_name" }, t("image"), h("input", { id: "image_name", required: true })),
    h("label", { for: "version" }, t("version"), h("input", { id: "version", required: true })),
    h("label", { for: "file" }, t("file"), file),
    h("button", { id: "upload", type: "submit" }, t("upload")),
    h("div", { class: "progress" }, progress, " ", progressText),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const params = {
      image_name: form.querySelector("#image_name").value.trim(),
      version: form.querySelector("#version").value.trim(),
    };
    progress.value = 0;
    try {
      const body = await upload("/image/uploadImage", params, file.files[0], (loaded, total) => {
        const percent = total ? Math.floor((100 * loaded) / total) : 0;
        progress.value = percent;
        progressText.textContent = `${percent}% (${bytes(loaded)} / ${bytes(total)})`;
      });
      track(body.data.jobid, `${t("upload")} ${params.image_name}:${params.version}`);
      notice(status, `${body.msg}: ${body.data.jobid}`, "info");
    } catch (exc) {
      notice(status, exc.message);
    }
  });

  const remove = async (image, version) => {
    if (!window.confirm(`${t("confirmDelete")} ${image}${version ? `:${version}` : ""}`)) return;
    try {
      const body = version
        ? await call("DELETE", "/image/deleteByImageVersion", { params: { image, imageVersion: version } })
        : await call("DELETE", "/image/deleteByImage", { params: { image } });
      notice(status, `${body.msg}: ${(body.data.versions || []).join(", ")}`, "info");
      await draw();
    } catch (exc) {
      notice(status, exc.message); // a refusal names the containers that use it
    }
  };

  const draw = async () => {
    const list = (await get("/image/search", { wordKey: "" })).data || [];
    catalog.replaceChildren(
      h(
        "table",
        { id: "catalog" },
        h("tr", {}, [t("image"), t("version"), t("size"), t("uploaded"), t("actions")].map((x) => h("th", {}, x))),
        list.map((image) =>
          image.versions.map((v, i) =>
            h(
              "tr",
              { "data-image": image.name, "data-version": v.version },
              h("td", {}, i === 0 ? image.name : ""),
              h("td", {}, v.version),
              h("td", {}, bytes(v.size)),
              h("td", {}, v.uploadtime),
              h(
                "td",
                { class: "buttons" },
                h("button", { type: "button", class: "delete", onclick: () => remove(image.name, v.version) }, t("deleteVersion")),
                i === 0 ? h("button", { type: "button", class: "delete", onclick: () => remove(image.name, "") }, t("deleteImage")) : "",
              ),
            ),
          ),
        ),
      ),
    );
  };
  const jobs = h("section", { class: "detail" });
  root.replaceChildren(h("h2", {}, t("images")), status, h("h3", {}, t("catalog")), catalog, form, jobs);
  const stopJobs = jobPanel(jobs);
  const stopCatalog = every(5000, async () => {
    try {
      await draw();
    } catch (exc) {
      notice(status, exc.message);
    }
  });
  return () => {
    stopJobs();
    stopCatalog();
  };
}
