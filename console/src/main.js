// The console's shell: sign-in with an API token, the navigation, the language switch, and the
// page of the current #hash. A page is `render(root) -> stop()`; stop ends its polling.

import "./style.css";
import { ApiError, get, token, whenUnauthorized } from "./api.js";
import { h, notice } from "./dom.js";
import { lang, setLang, t } from "./i18n.js";
import fleet from "./pages/fleet.js";
import deployments from "./pages/deployments.js";
import rollouts from "./pages/rollouts.js";
import images from "./pages/images.js";
import bandwidth from "./pages/bandwidth.js";

const PAGES = { fleet, deployments, rollouts, images, bandwidth };
const app = document.getElementById("app");
let stopPage = () => {};

function signIn(reason = "") {
  stopPage();
  const input = h("input", { id: "token", type: "password", autocomplete: "off", size: 48 });
  const status = h("div", { id: "signin-status" });
  notice(status, reason);
  const submit = async (event) => {
    event.preventDefault();
    token.set(input.value.trim());
    try {
      await get("/node/list"); // any read: says whether the token is accepted
      location.hash = location.hash || "#fleet";
      show();
    } catch (exc) {
      token.clear();
      notice(status, exc instanceof ApiError ? exc.message : String(exc));
    }
  };
  app.replaceChildren(
    h(
      "form",
      { class: "signin", onsubmit: submit },
      h("h1", {}, t("title")),
      h("label", { for: "token" }, t("tokenLabel")),
      input,
      h("p", { class: "hint" }, t("tokenHint")),
      h("button", { id: "signin", type: "submit" }, t("signIn")),
      languageSwitch(),
      status,
    ),
  );
  input.focus();
}

function languageSwitch() {
  const other = lang() === "zh" ? "en" : "zh";
  return h(
    "button",
    {
      id: "lang",
      type: "button",
      class: "link",
      onclick: () => {
        setLang(other);
        token.get() ? show() : signIn();
      },
    },
    other === "en" ? "English" : "中文",
  );
}

function show() {
  if (!token.get()) {
    signIn();
    return;
  }
  stopPage();
  const name = (location.hash || "#fleet").slice(1).split("?")[0];
  const page = PAGES[name] ? name : "fleet";
  const nav = h(
    "nav",
    {},
    h("strong", {}, "Tingyu"),
    Object.keys(PAGES).map((key) =>
      h("a", { href: `#${key}`, id: `nav-${key}`, class: key === page ? "active" : "" }, t(key)),
    ),
    h("span", { class: "spacer" }),
    languageSwitch(),
    h(
      "button",
      {
        id: "signout",
        type: "button",
        class: "link",
        onclick: () => {
          token.clear();
          signIn();
        },
      },
      t("signOut"),
    ),
  );
  const main = h("main", { id: `page-${page}` });
  app.replaceChildren(nav, main);
  stopPage = PAGES[page](main) || (() => {});
}

whenUnauthorized((body) => {
  token.clear();
  signIn(`${body.code}: ${body.msg}`);
});
window.addEventListener("hashchange", show);
setLang(lang());
show();
