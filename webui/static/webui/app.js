// Mailroom's progressive enhancement: every page works without this file.
// No build step, no inline handlers (the CSP allows scripts from 'self' only).

const csrfToken = () => {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
};

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// ---- Compose: autosave, attachments, Ctrl+Enter, attachment reminder -------------------

function setupCompose(form) {
  const indicator = form.querySelector("[data-saved-indicator]");
  const draftInput = form.querySelector("input[name=draft]");
  const autosaveUrl = form.dataset.autosaveUrl;
  const uploadTemplate = form.dataset.uploadUrl; // ".../drafts/0/attachments/"
  const list = document.getElementById("attachment-list");
  const uploads = document.getElementById("upload-progress");
  const fileInput = form.querySelector("input[type=file][name=attachments]");
  const dropzone = form.querySelector("[data-dropzone]");
  const sendButton = form.querySelector("button[value=send]");
  let timer = null;
  let saving = null;
  let dirty = false;

  const show = (text, state) => {
    if (!indicator) return;
    indicator.textContent = text;
    indicator.classList.toggle("is-saving", state === "saving");
    indicator.classList.toggle("is-error", state === "error");
  };

  function fieldsOnly() {
    const data = new FormData(form);
    data.delete("attachments");
    data.delete("action");
    return data;
  }

  async function save() {
    if (saving) return saving;
    dirty = false;
    show("Saving…", "saving");
    saving = fetch(autosaveUrl, {
      method: "POST",
      body: fieldsOnly(),
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
      credentials: "same-origin",
    })
      .then(async (response) => {
        const body = await response.json().catch(() => ({}));
        if (!response.ok) throw new Error(body.error || "The draft could not be saved.");
        if (draftInput && body.draft) draftInput.value = body.draft;
        if (body.url && window.location.pathname !== body.url) {
          window.history.replaceState(null, "", body.url);
          form.action = body.url;
        }
        show(`Saved ${body.saved_at || ""}`.trim(), "saved");
        return body.draft;
      })
      .catch((error) => {
        show(error.message || "Not saved — check your connection.", "error");
        throw error;
      })
      .finally(() => {
        saving = null;
      });
    return saving;
  }

  form.addEventListener("input", (event) => {
    if (event.target === fileInput) return;
    dirty = true;
    show("Unsaved changes", "");
    clearTimeout(timer);
    timer = setTimeout(() => save().catch(() => {}), 1200);
    updateReminder();
  });

  // Leaving with unsaved typing: save first (best effort, keepalive survives the unload).
  window.addEventListener("pagehide", () => {
    if (!dirty || !autosaveUrl) return;
    fetch(autosaveUrl, {
      method: "POST", body: fieldsOnly(), keepalive: true, credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken() },
    });
  });
  form.addEventListener("submit", (event) => {
    dirty = false;
    clearTimeout(timer);
    // An autosave still on its way may be creating the draft: wait for its id, or this
    // submit would create a second draft beside it.
    if (saving) {
      event.preventDefault();
      const submitter = event.submitter;
      saving.catch(() => {}).finally(() => form.requestSubmit(submitter));
    }
  });

  // Ctrl+Enter (Cmd+Enter on a Mac) sends, as in most mail programs.
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && sendButton) {
      event.preventDefault();
      form.requestSubmit(sendButton);
    }
  });

  // Attachments: upload each file on its own request, with a progress bar.
  function upload(file, draftId) {
    const row = document.createElement("div");
    row.className = "upload";
    const label = document.createElement("span");
    label.textContent = `${file.name} (${formatSize(file.size)})`;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", `Uploading ${file.name}`);
    row.append(label, bar);
    uploads.append(row);
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", uploadTemplate.replace("/0/", `/${draftId}/`));
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) bar.value = Math.round((event.loaded / event.total) * 100);
      });
      xhr.addEventListener("load", () => {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch { body = {}; }
        if (xhr.status === 200 && body.html !== undefined) {
          list.innerHTML = body.html;
          row.remove();
        } else {
          bar.remove();
          row.classList.add("error-box");
          label.textContent = body.error || `${file.name} could not be uploaded (error ${xhr.status}). Try again.`;
        }
        updateReminder();
        resolve();
      });
      xhr.addEventListener("error", () => {
        bar.remove();
        row.classList.add("error-box");
        label.textContent = `${file.name} could not be uploaded: the connection failed. Try again.`;
        resolve();
      });
      const data = new FormData();
      data.append("file", file);
      xhr.send(data);
    });
  }

  async function uploadAll(files) {
    if (!files.length || !uploadTemplate || !list || !uploads) return false;
    let draftId = draftInput && draftInput.value;
    try {
      if (!draftId) draftId = await save();
    } catch {
      return true;
    }
    for (const file of files) await upload(file, draftId);
    return true;
  }

  if (fileInput) {
    fileInput.addEventListener("change", async () => {
      const files = Array.from(fileInput.files);
      if (await uploadAll(files)) fileInput.value = "";
    });
  }
  if (dropzone) {
    ["dragenter", "dragover"].forEach((type) =>
      dropzone.addEventListener(type, (event) => {
        event.preventDefault();
        dropzone.classList.add("is-over");
      }));
    ["dragleave", "drop"].forEach((type) =>
      dropzone.addEventListener(type, () => dropzone.classList.remove("is-over")));
    dropzone.addEventListener("drop", (event) => {
      event.preventDefault();
      uploadAll(Array.from(event.dataTransfer.files));
    });
  }

  // "Did you forget the attachment?" while typing (the server asks again on send).
  const reminder = form.querySelector("[data-attachment-reminder]");
  const mentions = /\b(attach(ed|ment|ments|ing)?|enclosed|see the file)\b/i;
  function updateReminder() {
    if (!reminder) return;
    const text = ["subject", "body_text", "body_html"]
      .map((name) => (form.elements[name] ? form.elements[name].value : ""))
      .join(" ");
    const hasFiles = list && list.querySelector("li[data-attachment]");
    reminder.hidden = !(mentions.test(text) && !hasFiles);
  }
  updateReminder();
}

// ---- Undo send: count the hold down, then drop the button --------------------------------

function setupUndo(box) {
  if (box.dataset.counting) return;
  box.dataset.counting = "1";
  const until = Date.parse(box.dataset.undoUntil);
  const counter = box.querySelector("[data-undo-seconds]");
  const tick = () => {
    const left = Math.ceil((until - Date.now()) / 1000);
    if (left <= 0) {
      box.hidden = true;
      return;
    }
    if (counter) counter.textContent = String(left);
    window.setTimeout(tick, 250);
  };
  tick();
}

// ---- Small confirmations (no inline onclick) ---------------------------------------------

// Delegated, so forms that htmx swaps in later (the message page's live part) ask too.
function setupConfirm() {
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
}

// ---- Account form presets ----------------------------------------------------------------

function setupPresets(select) {
  const presets = JSON.parse(document.getElementById("account-presets").textContent);
  const form = select.form;
  select.addEventListener("change", () => {
    const preset = presets[select.value];
    const help = document.querySelector("[data-preset-help]");
    if (help) help.textContent = preset && preset.help ? preset.help : "";
    if (!preset) return;
    for (const [name, value] of Object.entries(preset)) {
      if (value === null) continue;
      const input = form.elements[name];
      if (!input) continue;
      if (input.type === "checkbox") input.checked = Boolean(value);
      else input.value = value;
    }
  });
}

function init() {
  const compose = document.getElementById("compose-form");
  if (compose) setupCompose(compose);
  document.querySelectorAll("[data-undo-until]").forEach(setupUndo);
  // The live part of the message page is replaced by htmx every few seconds.
  document.body.addEventListener("htmx:load", (event) =>
    event.detail.elt.querySelectorAll("[data-undo-until]").forEach(setupUndo));
  const preset = document.querySelector("select[name=preset]");
  if (preset && document.getElementById("account-presets")) setupPresets(preset);
  setupConfirm();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
