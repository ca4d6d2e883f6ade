/* 精防 Jingfang — the few behaviours the pages need on a phone (issue 16).
 * Every page works without this script; it adds:
 *  - a draft of the follow-up form kept on the device (localStorage, keyed by user + patient),
 *    restored on load with a visible note, cleared after a successful save and on logout;
 *  - a follow-up submit that survives a lost signal: it is sent with fetch, a network failure is
 *    shown and the draft kept; the form's idempotency key makes a retry record the visit once;
 *  - progress for slow downloads (the 五单 zip, the monthly PDF): "正在生成…" until the file arrives;
 *  - text boxes grown to their text where CSS field-sizing is missing; one-line boxes that wrap
 *    (textarea.oneline) take no line break.
 * No inline scripts: the pages' Content-Security-Policy may forbid them.
 */
(function () {
  "use strict";
  var PREFIX = "jf-draft:";

  function store() {
    try { return window.localStorage; } catch (e) { return null; }
  }

  function user() { return document.body.getAttribute("data-user") || ""; }

  function draftKey(patient) { return PREFIX + user() + ":" + patient; }

  function formValues(form) {
    var out = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrf_token" || el.disabled) return;
      if (el.type === "checkbox") {
        out[el.name] = out[el.name] || [];
        if (el.checked) out[el.name].push(el.value);
      } else if (el.type === "radio") {
        if (el.checked) out[el.name] = el.value;
      } else {
        out[el.name] = el.value;
      }
    });
    return out;
  }

  function restore(form, values) {
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || !(el.name in values)) return;
      var v = values[el.name];
      if (el.type === "checkbox") el.checked = Array.isArray(v) && v.indexOf(el.value) >= 0;
      else if (el.type === "radio") el.checked = el.value === v;
      else if (el.type !== "hidden" || el.name === "idempotency_key") el.value = v;
    });
  }

  function clearDrafts(prefix) {
    var s = store();
    if (!s) return;
    var doomed = [];
    for (var i = 0; i < s.length; i++) {
      var k = s.key(i);
      if (k && k.indexOf(prefix) === 0) doomed.push(k);
    }
    doomed.forEach(function (k) { s.removeItem(k); });
  }

  function setupDraft(form) {
    var s = store();
    var patient = form.getAttribute("data-draft");
    var key = draftKey(patient);
    var note = document.getElementById("draft-note");
    var failed = document.getElementById("submit-failed");
    var rerendered = document.querySelector(".alert[role=alert] ul");  // the server's error page: keep what it shows
    if (s && !rerendered) {
      var saved = s.getItem(key);
      if (saved) {
        try {
          var draft = JSON.parse(saved);
          restore(form, draft.values || {});
          if (note) {
            note.textContent = "已恢复本机保存的草稿（" + (draft.at || "") + "），请核对后提交。";
            note.hidden = false;
          }
        } catch (e) { s.removeItem(key); }
      }
    }
    function save() {
      if (!s) return;
      var now = new Date();
      var at = now.getFullYear() + "-" + ("0" + (now.getMonth() + 1)).slice(-2) + "-" + ("0" + now.getDate()).slice(-2) +
        " " + ("0" + now.getHours()).slice(-2) + ":" + ("0" + now.getMinutes()).slice(-2);
      try { s.setItem(key, JSON.stringify({ at: at, values: formValues(form) })); } catch (e) { /* storage full */ }
    }
    // the first change stores the draft with this form's idempotency key, so a retry after a reload reuses it
    form.addEventListener("input", save);
    form.addEventListener("change", save);

    if (!window.fetch || !window.FormData) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      save();
      if (failed) failed.hidden = true;
      var button = form.querySelector("button[type=submit]");
      if (button) { button.disabled = true; button.dataset.label = button.textContent; button.textContent = "正在提交…"; }
      function done() { if (button) { button.disabled = false; button.textContent = button.dataset.label; } }
      fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (resp) {
          if (resp.ok && resp.redirected) {
            window.location.assign(resp.url);  // the patient page clears the draft when it shows the save
            return;
          }
          // errors to correct (422) or a refusal: let the server render its page for this same post
          // (nothing was recorded under the key, so posting again is safe)
          done();
          HTMLFormElement.prototype.submit.call(form);
        })
        .catch(function () {
          done();
          if (failed) { failed.hidden = false; failed.scrollIntoView({ block: "center" }); }
        });
    });
  }

  function setupDownloads() {
    Array.prototype.forEach.call(document.querySelectorAll("a[data-download]"), function (a) {
      if (!window.fetch || !window.URL || !URL.createObjectURL) return;
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        if (a.getAttribute("aria-busy") === "true") return;
        var label = a.getAttribute("data-download");
        a.setAttribute("aria-busy", "true");
        a.classList.add("busy");
        a.textContent = "正在生成…";
        var status = document.getElementById("download-status");
        function finish(message, bad) {
          a.removeAttribute("aria-busy");
          a.classList.remove("busy");
          a.textContent = label;
          if (status) {
            status.textContent = message;
            status.className = bad ? "alert" : "notice";
            status.hidden = !message;
          }
        }
        if (status) { status.textContent = "正在生成" + label.replace(/^下载/, "") + "，请稍候…"; status.className = "notice busy"; status.hidden = false; }
        fetch(a.href, { credentials: "same-origin" }).then(function (resp) {
          if (!resp.ok) throw new Error("HTTP " + resp.status);
          var disposition = resp.headers.get("Content-Disposition") || "";
          var m = /filename="([^"]+)"/.exec(disposition);
          return resp.blob().then(function (blob) {
            var url = URL.createObjectURL(blob);
            var link = document.createElement("a");
            link.href = url;
            link.download = m ? m[1] : "";
            document.body.appendChild(link);
            link.click();
            link.remove();
            setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
            finish("已生成：" + (m ? m[1] : label), false);
          });
        }).catch(function () {
          finish("生成失败，请检查网络后重试。", true);
        });
      });
    });
  }

  // a form's text shown whole: where the browser lacks CSS field-sizing a box is grown to its text
  // here; a one-line box (textarea.oneline, forms.py "longtext") takes no line break — Enter does
  // nothing, a pasted break becomes a space (the server does the same)
  function setupTextBoxes() {
    var sizes = window.CSS && CSS.supports && CSS.supports("field-sizing", "content");
    Array.prototype.forEach.call(document.querySelectorAll(".field textarea, textarea.oneline"), function (box) {
      var oneLine = box.classList.contains("oneline");
      function fit() {
        if (sizes) return;
        box.style.height = "auto";
        box.style.height = (box.scrollHeight + box.offsetHeight - box.clientHeight) + "px";
      }
      if (oneLine) box.addEventListener("keydown", function (ev) { if (ev.key === "Enter" && !ev.isComposing) ev.preventDefault(); });
      box.addEventListener("input", function () {
        if (oneLine && /[\r\n]/.test(box.value)) box.value = box.value.replace(/\r\n?|\n/g, " ");
        fit();
      });
      fit();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupTextBoxes();
    var form = document.getElementById("follow-up-form");
    if (form) setupDraft(form);
    var saved = document.querySelector("[data-saved-follow-up]");
    var s = store();
    if (saved && s) s.removeItem(draftKey(saved.getAttribute("data-saved-follow-up")));
    var logout = document.getElementById("logout");
    if (logout) logout.addEventListener("submit", function () { clearDrafts(PREFIX + user() + ":"); });
    setupDownloads();
  });
})();
