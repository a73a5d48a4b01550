/* Stammkunde storefront widget: a launcher with the member's points and rewards on every page, and
   on the cart page "you earn N points" and "apply my reward" (redeem through the app proxy, then
   put the code on the cart). Vanilla JS, no dependencies. Texts come from the app, in the
   customer's language. */
(function () {
  "use strict";
  var w = window, d = document, me = d.currentScript;
  if (w.StammkundeWidget || !me || !w.fetch) return;
  var S = w.Shopify || {}, root = (S.routes && S.routes.root) || "/";
  var base = me.getAttribute("data-proxy") || root + "apps/stammkunde";
  var locale = S.locale || d.documentElement.lang || "";
  var state = { bal: null, rewards: null };
  var css = d.createElement("link");
  css.rel = "stylesheet";
  css.href = me.src.replace(/\.js(\?.*)?$/, ".css");
  d.head.appendChild(css);

  function api(path, body) {
    var url = base + "/api/" + path + (path.indexOf("?") < 0 ? "?" : "&") + "locale=" + encodeURIComponent(locale);
    var opt = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body) {
      opt.method = "POST";
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    return fetch(url, opt).then(function (r) {
      return r.json().then(function (j) { if (!r.ok) throw j; return j; });
    });
  }
  function el(tag, cls, text, parent) {
    var e = d.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function button(text, cls, parent, onclick) {
    var b = el("button", "sk-button" + (cls ? " " + cls : ""), text, parent);
    b.type = "button";
    b.addEventListener("click", onclick);
    return b;
  }
  function key() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    var a = new Uint8Array(16);
    w.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }
  function T(name) { return (state.bal && state.bal.texts[name]) || ""; }
  function rewards() {
    return state.rewards ? Promise.resolve(state.rewards) : api("rewards").then(function (j) { return (state.rewards = j.rewards); });
  }

  /* Redeem once (one key per click), then ask until the shop holds the code. */
  function redeem(reward, say) {
    say(T("creating"));
    return api("redeem", { reward: reward.id, request_key: key() }).then(function (r) {
      state.rewards = null;
      return waitCode(r, 0, say);
    });
  }
  function waitCode(r, tries, say) {
    if (r.status === "failed") throw { message: T("failed") };
    if (r.status === "created") return r;
    if (tries > 40) throw { message: T("slow") };
    return new Promise(function (ok) { setTimeout(ok, Math.min(500 + tries * 250, 2000)); })
      .then(function () { return api("redemptions/" + r.redemption_id); })
      .then(function (n) { return waitCode(n, tries + 1, say); });
  }
  /* Put the code on the cart: Cart AJAX API `discount`, else the /discount/CODE link. */
  function applyCode(code) {
    return fetch(root + "cart/update.js", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ discount: code })
    }).then(function (r) {
      if (!r.ok) throw r;
      w.location.reload();
    }).catch(function () {
      w.location.href = root + "discount/" + encodeURIComponent(code) + "?redirect=" + encodeURIComponent(root + "cart");
    });
  }

  /* --- launcher ------------------------------------------------------------------------------ */
  function launcher() {
    var b = state.bal, wrap = el("div", "sk-widget", null, d.body);
    var open = el("button", "sk-launcher", null, wrap);
    open.type = "button";
    open.setAttribute("aria-expanded", "false");
    el("span", "sk-star", "\u2605", open).setAttribute("aria-hidden", "true");
    el("span", "sk-launcher-text", b.member ? b.balance_text : T("title"), open);
    var panel = el("div", "sk-panel", null, wrap);
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-label", T("title"));
    open.addEventListener("click", function () {
      panel.hidden = !panel.hidden;
      open.setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) fill(panel);
    });
  }
  function fill(panel) {
    var b = state.bal;
    panel.textContent = "";
    var head = el("div", "sk-panel-head", null, panel);
    el("strong", null, T("title"), head);
    button("\u00d7", "sk-close", head, function () { panel.hidden = true; }).setAttribute("aria-label", T("close"));
    if (!b.logged_in) {
      el("p", null, T("join"), panel);
      if (b.point_value) el("p", "sk-note", b.point_value.text, panel);
      var a = el("a", "sk-button", T("login"), panel);
      a.href = root + "account/login?return_url=" + encodeURIComponent(base);
      return;
    }
    el("p", "sk-big", b.balance_text, panel);
    if (b.available_value_text) el("p", "sk-note sk-worth", b.available_value_text, panel);
    if (b.pending_text) el("p", "sk-note", b.pending_text, panel);
    if (b.tier) el("p", null, T("tier") + ": " + b.tier, panel);
    if (b.point_value) el("p", "sk-note", b.point_value.text, panel);
    var list = el("ul", "sk-rewards", null, panel), msg = el("p", "sk-msg", null, panel);
    msg.setAttribute("role", "status");
    rewards().then(function (rs) {
      rs.filter(function (r) { return r.affordable; }).forEach(function (r) {
        var li = el("li", null, null, list);
        el("span", "sk-reward", r.name, li);
        if (r.description) el("span", "sk-offer", r.description, li);
        button(T("redeem"), null, li, function (ev) {
          ev.target.disabled = true;
          redeem(r, function (t) { msg.textContent = t; }).then(function (done) {
            msg.textContent = done.code ? T("code") + " " + done.code : T("credited");
          }).catch(function (e) { msg.textContent = e.message || T("failed"); ev.target.disabled = false; });
        });
      });
      if (b.next_text) el("p", "sk-note", b.next_text, panel);
      var more = el("a", null, T("details"), panel);
      more.href = base + "?locale=" + encodeURIComponent(locale);
    });
  }

  /* --- cart ---------------------------------------------------------------------------------- */
  function isCart() {
    return d.querySelector("[data-stammkunde-cart]") || /\/cart\/?$/.test(w.location.pathname);
  }
  function cartBox() {
    var spot = d.querySelector("[data-stammkunde-cart]"), box = el("div", "sk-cart");
    box.setAttribute("aria-live", "polite");
    if (spot) spot.appendChild(box);
    else {
      var form = d.querySelector('form[action$="/cart"]');
      if (form && form.parentNode) form.parentNode.insertBefore(box, form.nextSibling);
      else (d.querySelector("main") || d.body).appendChild(box);
    }
    return box;
  }
  function cart() {
    fetch(root + "cart.js", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (c) {
        var box = cartBox(), rate = c.currency && state.bal.currency !== c.currency ? Number((S.currency && S.currency.rate) || 1) || 1 : 1;
        var sub = c.total_price, lines = [];
        function money(cents) { return (cents / 100 / rate).toFixed(2); }
        /* Each line, so product rules weigh it (a gift card bought is no merchandise; a long cart by its total). */
        (c.items || []).forEach(function (i) {
          if (i.gift_card) sub -= i.final_line_price;
          else lines.push({ product_id: i.product_id || null, variant_id: i.variant_id || null, vendor: i.vendor || null, amount: money(i.final_line_price) });
        });
        api("cart-points?subtotal=" + money(Math.max(sub, 0)) + "&currency=" + encodeURIComponent(state.bal.currency) +
          (lines.length && lines.length <= 50 ? "&lines=" + encodeURIComponent(JSON.stringify(lines)) : ""))
          .then(function (p) {
            el("p", "sk-earn", p.text + (p.value_text ? " (" + p.value_text + ")" : ""), box);
            offer(box);
          })
          .catch(function () { offer(box); });
      });
  }
  function offer(box) {
    var b = state.bal;
    if (!b.member || !b.affordable_count) return;
    var msg = el("p", "sk-msg", null);
    var first = button(T("apply"), "sk-apply", box, function () {
      first.disabled = true;
      rewards().then(function (rs) {
        el("p", "sk-note", T("choose"), box).id = "sk-choose";
        var list = el("ul", "sk-rewards", null, box);
        list.setAttribute("aria-labelledby", "sk-choose");
        rs.filter(function (r) { return r.affordable && r.kind !== "store_credit"; }).forEach(function (r) {
          var li = el("li", null, null, list);
          button(r.name, "sk-choice", li, function () {
            Array.prototype.forEach.call(list.querySelectorAll("button"), function (x) { x.disabled = true; });
            redeem(r, function (t) { msg.textContent = t; }).then(function (done) {
              msg.textContent = T("applied") + " " + done.code;
              return applyCode(done.code);
            }).catch(function (e) { msg.textContent = e.message || T("failed"); });
          });
        });
        box.appendChild(msg);
      });
    });
  }

  w.StammkundeWidget = { version: 1 };
  api("balance").then(function (b) {
    state.bal = b;
    launcher();
    if (isCart()) cart();
  }).catch(function (e) {
    if (w.console) w.console.warn("Stammkunde: loyalty widget unavailable", e && e.error);
  });
})();
