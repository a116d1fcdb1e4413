// VSR web page: upload a draft, preview a frame, upscale, follow progress, download.
// Plain JavaScript, no build step; talks only to this server's /api.
'use strict';

(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const KEY_STORE = 'vsr.apiKey';
  const RUNNING = new Set(['queued', 'processing']);
  const STATUS_WORDS = {
    draft: 'Draft',
    queued: 'Queued',
    processing: 'Processing',
    completed: 'Completed',
    failed: 'Failed',
    cancelled: 'Cancelled',
    expired: 'Expired',
    deleted: 'Deleted',
  };
  // A first sentence in plain words for each error code the API documents; the server's
  // `detail` follows it.
  const FRIENDLY = {
    unreadable_media: 'This file could not be read as a video.',
    unsupported: 'This video is not supported.',
    no_video: 'This file has no video track.',
    too_large: 'The file is too large for this server.',
    over_limit: 'The video is over this server’s limits.',
    queue_full: 'The server is busy right now.',
    insufficient_storage: 'The server is low on disk space.',
    unauthorized: 'This server needs an API key.',
    task_finished: 'That task has already finished.',
    task_not_found: 'That task no longer exists.',
    not_draft: 'That upload has already been started.',
    not_ready: 'The result is not ready yet.',
    expired: 'The video is no longer stored on the server.',
    invalid_settings: 'A setting was not accepted.',
    model_unavailable: 'The chosen model is not available on this server.',
    output_too_large: 'The result would be too large.',
    missing_video: 'No video was sent.',
    bad_upload: 'The upload did not arrive complete.',
    internal_error: 'The server ran into a problem.',
    network: 'Could not reach the server.',
  };
  const FIELD_WORDS = {
    scale: 'Scale',
    quality: 'Quality preset',
    denoiseLevel: 'Denoise',
    preserveDetails: 'Preserve fine details',
    temporalStability: 'Temporal stability',
    model: 'Model',
    codec: 'Output codec',
    video: 'Video',
  };

  const state = {
    apiKey: localStorage.getItem(KEY_STORE) || '',
    catalog: null, // GET /api/models
    file: null, // the File chosen, kept to upload again for new settings
    task: null, // the current task (draft, running or finished)
    xhr: null,
    events: null,
    pollTimer: 0,
    listTimer: 0,
    lastProgress: null,
    listRunning: false,
    uploading: false,
    previewing: false,
    starting: false,
    generation: 0, // bumps whenever another task becomes current
    imageUrl: null, // the object URL of the last upscaled image
  };

  // ---------- small helpers ----------

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field || '';
    }
  }

  function sentence(text) {
    const t = String(text).trim().replace(/\s+/g, ' ');
    if (!t) return '';
    // A plain first word is capitalised; a file name or identifier is left as it is.
    const first = /^[a-z]+[\s,]/.test(t) ? t.charAt(0).toUpperCase() + t.slice(1) : t;
    return /[.!?]$/.test(first) ? first : first + '.';
  }

  /** Plain words for a failed request: never the raw body. */
  function plainMessage(status, code, detail, field) {
    if (code === 'unauthorized') {
      return state.apiKey ? 'The saved API key was not accepted. Enter another one under “API key”.' : 'This server needs an API key. Enter it under “API key” at the top of the page.';
    }
    let lead = FRIENDLY[code];
    if (!lead) {
      if (!status) lead = FRIENDLY.network;
      else if (status >= 500) lead = 'The server ran into a problem.';
      else if (status === 404) lead = 'Not found on the server.';
      else lead = 'The server did not accept this request.';
    }
    const parts = [lead];
    if (field && FIELD_WORDS[field] && code !== 'unauthorized') parts.push(`(${FIELD_WORDS[field]})`);
    if (detail) {
      const d = sentence(detail);
      if (d && d.toLowerCase() !== lead.toLowerCase()) parts.push(d);
    }
    return parts.join(' ');
  }

  function errorFromBody(status, text) {
    let problem = null;
    if (text) {
      try {
        problem = JSON.parse(text);
      } catch (_) {
        problem = null;
      }
    }
    const isObj = problem && typeof problem === 'object';
    const code = isObj && typeof problem.code === 'string' ? problem.code : '';
    const detail = isObj && typeof problem.detail === 'string' ? problem.detail : '';
    const field = isObj && typeof problem.field === 'string' ? problem.field : '';
    if (status === 401) askForKey();
    return new ApiError(status, code, plainMessage(status, code, detail, field), field);
  }

  function authHeaders(extra) {
    const h = Object.assign({ Accept: 'application/json, application/problem+json' }, extra || {});
    if (state.apiKey) h['X-API-Key'] = state.apiKey;
    return h;
  }

  async function api(method, path, body) {
    const init = { method, headers: authHeaders() };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, 'network', plainMessage(0, 'network', 'check that it is running, then try again'));
    }
    const text = res.status === 204 ? '' : await res.text();
    if (!res.ok) throw errorFromBody(res.status, text);
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new ApiError(res.status, 'bad_response', 'The server sent an answer this page could not read.');
    }
  }

  function show(el, on) {
    el.hidden = !on;
  }

  function showError(el, err) {
    if (!err) {
      el.textContent = '';
      el.hidden = true;
      return;
    }
    el.textContent = err instanceof ApiError ? err.message : sentence(err.message || String(err));
    el.hidden = false;
  }

  function fmtNumber(n, digits) {
    if (typeof n !== 'number' || !isFinite(n)) return '–';
    return n.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function fmtSeconds(s) {
    if (typeof s !== 'number' || !isFinite(s) || s < 0) return '–';
    if (s < 60) return `${Math.round(s)} s`;
    const m = Math.floor(s / 60);
    const sec = Math.round(s % 60);
    if (m < 60) return `${m} min ${String(sec).padStart(2, '0')} s`;
    const h = Math.floor(m / 60);
    return `${h} h ${String(m % 60).padStart(2, '0')} min`;
  }

  function fmtTime(t) {
    return `${(Number(t) || 0).toFixed(2)} s`;
  }

  function fmtSize(w, h) {
    return w && h ? `${w} × ${h}` : '–';
  }

  function fmtMB(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '';
    return `${(bytes / 1e6).toLocaleString(undefined, { maximumFractionDigits: bytes < 1e7 ? 2 : 1 })} MB`;
  }

  /** A file's size for people: kB below a megabyte. */
  function fmtBytes(bytes) {
    if (typeof bytes !== 'number' || !isFinite(bytes)) return '';
    if (bytes < 1e6) return `${Math.max(1, Math.round(bytes / 1e3)).toLocaleString()} kB`;
    return fmtMB(bytes);
  }

  function fmtDate(iso) {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay
      ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function fmtRelative(iso) {
    if (!iso) return '';
    const ms = new Date(iso) - Date.now();
    if (isNaN(ms)) return '';
    const s = Math.abs(ms) / 1000;
    const words = s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} days`;
    return ms >= 0 ? `in ${words}` : `${words} ago`;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  // ---------- API key ----------

  function askForKey() {
    const auth = $('#auth');
    const wasHidden = auth.hidden;
    auth.hidden = false;
    $('#auth-toggle').hidden = false;
    $('#auth-toggle').setAttribute('aria-expanded', 'true');
    $('#auth-message').textContent = state.apiKey
      ? 'The saved API key was not accepted. Enter another one.'
      : 'This server needs an API key. Enter it here; it is kept in this browser only.';
    if (wasHidden) $('#api-key').focus();
  }

  function setupAuth() {
    const toggle = $('#auth-toggle');
    if (state.apiKey) toggle.hidden = false;
    toggle.addEventListener('click', () => {
      const auth = $('#auth');
      auth.hidden = !auth.hidden;
      toggle.setAttribute('aria-expanded', String(!auth.hidden));
      if (!auth.hidden) {
        $('#auth-message').textContent = state.apiKey
          ? 'An API key is saved in this browser. Enter another to replace it.'
          : 'Enter an API key if this server needs one; it is kept in this browser only.';
        $('#api-key').focus();
      }
    });
    $('#auth-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const key = $('#api-key').value.trim();
      if (!key) {
        $('#auth-message').textContent = 'Enter a key first.';
        $('#api-key').focus();
        return;
      }
      state.apiKey = key;
      localStorage.setItem(KEY_STORE, key);
      $('#api-key').value = '';
      $('#auth').hidden = true;
      toggle.hidden = false;
      toggle.setAttribute('aria-expanded', 'false');
      toggle.focus();
      loadCatalog();
      refreshTasks();
    });
    $('#auth-forget').addEventListener('click', () => {
      state.apiKey = '';
      localStorage.removeItem(KEY_STORE);
      $('#api-key').value = '';
      $('#auth-message').textContent = 'The key is forgotten.';
    });
  }

  // ---------- settings ----------

  function selectedQuality() {
    const r = $('input[name="quality"]:checked');
    return r ? r.value : 'balanced';
  }

  function modelInfo(name) {
    return state.catalog && state.catalog.models ? state.catalog.models.find((m) => m.name === name) : null;
  }

  function currentSettings() {
    const s = {
      scale: Number($('#scale').value),
      quality: selectedQuality(),
      denoiseLevel: Number($('#denoise').value),
      preserveDetails: $('#preserve-details').checked,
      temporalStability: $('#temporal').value,
      codec: $('#codec').value,
    };
    const model = $('#model').value;
    if (model) s.model = model;
    return s;
  }

  function effectiveScale() {
    const model = modelInfo($('#model').value);
    if (model && model.scale) return Number(model.scale);
    return Number($('#scale').value);
  }

  const DENOISE_WORDS = ['off', 'light', 'medium', 'strong'];

  function updateSettingsHints() {
    const level = Number($('#denoise').value);
    $('#denoise-value').textContent = `${level} (${DENOISE_WORDS[level]})`;
    $('#denoise').setAttribute('aria-valuetext', DENOISE_WORDS[level]);

    const modelName = $('#model').value;
    const model = modelInfo(modelName);
    const scaleSel = $('#scale');
    if (model) {
      const s = String(model.scale);
      if ($(`#scale option[value="${s}"]`)) scaleSel.value = s;
      scaleSel.disabled = true;
      $('#scale-hint').textContent = `Scale follows the chosen model: ${model.scale}×.`;
      $('#model-hint').textContent = `${model.family || 'model'}, ${model.scale}×${model.denoise && model.denoise !== 'none' ? ', ' + model.denoise : ''}${model.licence ? ', licence ' + model.licence : ''}. The quality preset does not apply.`;
    } else {
      scaleSel.disabled = false;
      $('#scale-hint').textContent = '';
      $('#model-hint').textContent = 'The preset picks the model for the scale.';
    }

    const preset = state.catalog && state.catalog.presets ? state.catalog.presets.find((p) => p.name === selectedQuality()) : null;
    if (preset && !model) {
      const scale = Number(scaleSel.value);
      const passes = scale === 8 ? [preset.models['2'], preset.models['4']] : [preset.models[String(scale)]];
      const missing = passes.filter((n) => {
        const m = modelInfo(n);
        return m && m.installed === false;
      });
      $('#preset-hint').textContent =
        `At ${scale}× this uses ${passes.filter(Boolean).join(', then ')}.` +
        (missing.length ? ` Not installed on this server: ${missing.join(', ')}.` : '');
    } else {
      $('#preset-hint').textContent = '';
    }
    updateOutputFact();
  }

  async function loadCatalog() {
    try {
      const cat = await api('GET', '/api/models');
      state.catalog = cat;
      for (const p of cat.presets || []) {
        const slot = $(`[data-preset-summary="${p.name}"]`);
        if (slot) slot.textContent = p.summary || '';
      }
      const scaleSel = $('#scale');
      if (Array.isArray(cat.scales) && cat.scales.length) {
        const current = scaleSel.value;
        for (const opt of $$('option', scaleSel)) opt.hidden = opt.disabled = !cat.scales.includes(Number(opt.value));
        if (!cat.scales.includes(Number(current))) scaleSel.value = String(cat.scales[0]);
      }
      const modelSel = $('#model');
      const chosen = modelSel.value;
      for (const opt of $$('option', modelSel)) if (opt.value) opt.remove();
      for (const m of (cat.models || []).filter((m) => m.installed)) {
        modelSel.append(el('option', { value: m.name, text: `${m.name} (${m.scale}×)` }));
      }
      if (chosen && modelInfo(chosen) && modelInfo(chosen).installed) modelSel.value = chosen;
      updateSettingsHints();
    } catch (err) {
      $('#model-hint').textContent = `The model list could not be loaded. ${err.message}`;
    }
  }

  function setupSettings() {
    $('#settings-form').addEventListener('input', updateSettingsHints);
    $('#settings-form').addEventListener('change', updateSettingsHints);
    $('#settings-form').addEventListener('submit', (e) => e.preventDefault());
    updateSettingsHints();
  }

  // ---------- upload ----------

  function uploadDraft(file, settings, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      state.xhr = xhr;
      xhr.open('POST', '/api/upload');
      xhr.setRequestHeader('Accept', 'application/json, application/problem+json');
      if (state.apiKey) xhr.setRequestHeader('X-API-Key', state.apiKey);
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total, false);
      });
      xhr.upload.addEventListener('load', () => onProgress(1, true));
      xhr.addEventListener('load', () => {
        state.xhr = null;
        if (xhr.status >= 200 && xhr.status < 300) {
          try {
            resolve(JSON.parse(xhr.responseText));
          } catch (_) {
            reject(new ApiError(xhr.status, 'bad_response', 'The server sent an answer this page could not read.'));
          }
        } else {
          reject(errorFromBody(xhr.status, xhr.responseText));
        }
      });
      xhr.addEventListener('error', () => {
        state.xhr = null;
        reject(new ApiError(0, 'network', 'The upload was interrupted: the server could not be reached.'));
      });
      xhr.addEventListener('abort', () => {
        state.xhr = null;
        reject(new ApiError(0, 'aborted', 'The upload was stopped.'));
      });
      const form = new FormData();
      form.append('settings', JSON.stringify(settings));
      form.append('start', 'false');
      form.append('video', file, file.name);
      xhr.send(form);
    });
  }

  /** Uploads the chosen file as a draft with the current settings; shows facts. */
  async function sendDraft() {
    const file = state.file;
    if (!file) throw new ApiError(0, 'missing_video', 'Choose a video first.');
    if (state.xhr) state.xhr.abort();
    state.uploading = true;
    updateButtons();
    const wrap = $('#upload-state');
    const bar = $('#upload-progress');
    const text = $('#upload-text');
    bar.value = 0;
    $('#upload-label').textContent = 'Uploading';
    text.textContent = `0% of ${fmtBytes(file.size)}`;
    show(wrap, true);
    showError($('#upload-error'), null);
    try {
      const task = await uploadDraft(file, currentSettings(), (fraction, sent) => {
        bar.value = Math.round(fraction * 100);
        if (sent) {
          $('#upload-label').textContent = 'Uploaded';
          text.textContent = 'Checking the video…';
        } else {
          text.textContent = `${Math.round(fraction * 100)}% of ${fmtBytes(file.size)}`;
        }
      });
      bar.value = 100;
      show(wrap, false);
      setTask(task);
      refreshTasks();
      return task;
    } catch (err) {
      show(wrap, false);
      throw err;
    } finally {
      state.uploading = false;
      updateButtons();
    }
  }

  /** Whether the chosen file is a still image (upscaled at once) rather than a video. */
  function isImage(file) {
    return /^image\/(png|jpeg|webp)$/.test(file.type || '') || /\.(png|jpe?g|webp)$/i.test(file.name);
  }

  /** Upscales an image with the current settings and shows it, with a download link. */
  async function upscaleImage(file) {
    const form = new FormData();
    form.append('settings', JSON.stringify(currentSettings()));
    form.append('image', file, file.name);
    const headers = { Accept: 'image/*, application/problem+json' };
    if (state.apiKey) headers['X-API-Key'] = state.apiKey;
    $('#run-status').textContent = 'Upscaling the image…';
    const started = performance.now();
    let r;
    try {
      r = await fetch('/api/images', { method: 'POST', body: form, headers });
    } catch (_) {
      throw new ApiError(0, 'network', 'The image could not be sent: the server could not be reached.');
    }
    if (!r.ok) throw errorFromBody(r.status, await r.text());
    const blob = await r.blob();
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = URL.createObjectURL(blob);
    const img = $('#image-result-img');
    img.src = state.imageUrl;
    await img.decode().catch(() => {});
    const link = $('#image-result-link');
    link.href = state.imageUrl;
    const named = /filename="([^"]+)"/.exec(r.headers.get('content-disposition') || '');
    link.download = named ? named[1] : file.name;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $('#image-result-text').textContent =
      `${img.naturalWidth} × ${img.naturalHeight}, ${fmtBytes(blob.size)}, in ${seconds} s`;
    show($('#image-result'), true);
    $('#run-status').textContent = 'Done: the upscaled image is shown below the drop zone.';
  }

  async function chooseFile(file) {
    if (!file) return;
    show($('#image-result'), false);
    if (isImage(file)) {
      const name = $('#file-name');
      name.textContent = `${file.name} · ${fmtBytes(file.size)}`;
      show(name, true);
      showError($('#upload-error'), null);
      try {
        await upscaleImage(file);
      } catch (err) {
        showError($('#upload-error'), err);
        $('#run-status').textContent = 'Choose a video or an image to begin.';
      }
      return;
    }
    const old = state.task;
    if (old && old.status === 'draft') api('DELETE', `/api/tasks/${encodeURIComponent(old.taskId)}`).catch(() => {});
    state.file = file;
    clearTask();
    const name = $('#file-name');
    name.textContent = `${file.name} · ${fmtBytes(file.size)}`;
    show(name, true);
    try {
      await sendDraft();
      $('#run-status').textContent = 'Ready. Preview a frame, or upscale the whole video.';
    } catch (err) {
      if (err.code === 'aborted') return;
      // A refused file is not kept: there is nothing to preview or start.
      if (state.file === file) state.file = null;
      updateButtons();
      showError($('#upload-error'), err);
      $('#run-status').textContent = 'Choose a video to begin.';
    }
  }

  function setupDropZone() {
    const zone = $('#drop-zone');
    const input = $('#file-input');
    input.addEventListener('change', () => {
      const f = input.files && input.files[0];
      if (f) chooseFile(f);
      input.value = '';
    });
    let depth = 0;
    zone.addEventListener('dragenter', (e) => {
      e.preventDefault();
      depth++;
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
    });
    zone.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove('dragging');
    });
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      depth = 0;
      zone.classList.remove('dragging');
      const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
      if (f) chooseFile(f);
    });
    // A file dropped beside the zone should not navigate away from the page.
    window.addEventListener('dragover', (e) => e.preventDefault());
    window.addEventListener('drop', (e) => e.preventDefault());
  }

  // ---------- the current task ----------

  function clearTask() {
    state.generation++;
    stopFollowing();
    state.task = null;
    state.lastProgress = null;
    show($('#facts'), false);
    showError($('#upload-error'), null);
    showError($('#preview-error'), null);
    showError($('#run-error'), null);
    $('#preview-status').textContent = '';
    show($('#preview-compare'), false);
    show($('#preview-took'), false);
    show($('#preview-notes'), false);
    stabilised.load(null);
    show($('#run-progress-wrap'), false);
    show($('#run-notes'), false);
    show($('#done-panel'), false);
    show($('#result-compare'), false);
    showError($('#result-error'), null);
    $('#result-status').textContent = '';
    $('#run-panel').removeAttribute('data-task-id');
    $('#run-panel').removeAttribute('data-status');
    $('#run-status').textContent = 'Choose a video to begin.';
    markCurrentRow();
    updateButtons();
  }

  function markCurrentRow() {
    const id = state.task ? state.task.taskId : '';
    for (const row of $$('#tasks-body tr')) row.classList.toggle('current', row.dataset.taskId === id);
  }

  function setTask(task) {
    const changed = !state.task || state.task.taskId !== task.taskId;
    if (changed) state.generation++;
    state.task = task;
    if (changed) {
      // A fresh start for the progress display and the frame pickers, before anything is drawn.
      resetProgress();
      const d = task.input && Number(task.input.duration);
      for (const id of ['#preview-time', '#result-time']) {
        const r = $(id);
        r.max = d > 0 ? String(d) : '0';
        r.step = task.input && task.input.fps > 0 ? String(Math.max(0.01, 1 / task.input.fps)) : '0.01';
        r.value = String(d > 0 ? d / 2 : 0);
      }
      updateTimeOutputs();
    }
    renderFacts(task);
    renderTaskStatus(task);
    markCurrentRow();
    updateButtons();
  }

  function renderFacts(task) {
    const inp = task.input || {};
    $('#fact-size').textContent = fmtSize(inp.width, inp.height);
    $('#fact-duration').textContent = typeof inp.duration === 'number' ? `${fmtNumber(inp.duration, 2)} s` : '–';
    $('#fact-fps').textContent = typeof inp.fps === 'number' ? `${fmtNumber(inp.fps, 3)} fps` : '–';
    $('#fact-frames').textContent = typeof inp.frames === 'number' ? fmtNumber(inp.frames, 0) : '–';
    show($('#facts'), true);
    updateOutputFact();
  }

  /** Output size: the input's times the scale chosen now (the server's once started). */
  function updateOutputFact() {
    const task = state.task;
    if (!task || !task.input) return;
    let w;
    let h;
    if (task.status === 'draft') {
      const s = effectiveScale();
      w = task.input.width * s;
      h = task.input.height * s;
    } else {
      w = task.output && task.output.width;
      h = task.output && task.output.height;
    }
    $('#fact-output').textContent = fmtSize(w, h);
  }

  function updateButtons() {
    const task = state.task;
    const running = !!task && RUNNING.has(task.status);
    const haveSource = !!state.file || (!!task && task.status === 'draft');
    const busy = state.uploading || state.starting;
    $('#preview-button').disabled = !haveSource || busy || state.previewing || !task;
    $('#preview-time').disabled = !task;
    $('#start-button').disabled = !haveSource || busy || running;
    const cancel = $('#cancel-button');
    cancel.hidden = !running;
    cancel.disabled = !running;
    $('#start-button').textContent = task && task.status !== 'draft' && !running && state.file ? 'Upscale again' : 'Upscale video';
  }

  function renderTaskStatus(task) {
    const panel = $('#run-panel');
    panel.dataset.taskId = task.taskId;
    panel.dataset.status = task.status;
    const status = $('#run-status');
    const words = {
      draft: 'Ready. Preview a frame, or upscale the whole video.',
      queued: 'Waiting in the queue…',
      processing: 'Upscaling…',
      completed: 'Completed.',
      failed: 'Failed.',
      cancelled: 'Cancelled. Nothing more will be done with this task.',
      expired: 'Expired: the files were removed from the server.',
      deleted: 'This task was deleted.',
    };
    status.textContent = words[task.status] || sentence(task.status);

    show($('#run-progress-wrap'), task.status !== 'draft');
    if (task.status !== 'draft') {
      if (typeof task.progress === 'number') setProgress(task.status === 'completed' ? 100 : task.progress);
      if (task.stage) $('#run-stage').textContent = task.stage;
      if (task.status === 'completed' && task.input && task.input.frames) {
        $('#run-frames').textContent = `${fmtNumber(task.input.frames, 0)} of ${fmtNumber(task.input.frames, 0)}`;
      }
    }

    const notes = task.settings && Array.isArray(task.settings.notes) ? task.settings.notes : [];
    const models = task.settings && Array.isArray(task.settings.models) ? task.settings.models : [];
    const ul = $('#run-notes');
    ul.replaceChildren();
    if (task.status !== 'draft') {
      if (models.length) ul.append(el('li', { text: `Models: ${models.join(' → ')}` }));
      const temporal = task.settings && task.settings.requested ? task.settings.requested.temporalStability : null;
      if (temporal) ul.append(el('li', { text: `Temporal stability: ${temporal}` }));
      for (const n of notes) ul.append(el('li', { text: sentence(n) }));
    }
    show(ul, ul.children.length > 0);

    if (task.status === 'failed') {
      const msg = task.error && task.error.message ? sentence(task.error.message) : 'The server did not say why.';
      showError($('#run-error'), new Error(`The upscale failed. ${msg}`));
    } else {
      showError($('#run-error'), null);
    }

    if (task.status === 'completed') showDone(task);
    else show($('#done-panel'), false);
    updateOutputFact();
  }

  function resetProgress() {
    setProgress(0);
    for (const id of ['#run-frames', '#run-fps', '#run-eta', '#run-stage']) $(id).textContent = '–';
  }

  function setProgress(pct) {
    const p = Math.max(0, Math.min(100, Number(pct) || 0));
    const bar = $('#run-progress');
    bar.value = p;
    bar.setAttribute('aria-valuetext', `${fmtNumber(p, 1)}%`);
    $('#run-percent').textContent = `${fmtNumber(p, 1)}%`;
  }

  function renderProgress(p) {
    state.lastProgress = p;
    show($('#run-progress-wrap'), true);
    setProgress(p.progress);
    $('#run-frames').textContent = typeof p.totalFrames === 'number' && p.totalFrames > 0
      ? `${fmtNumber(p.currentFrame, 0)} of ${fmtNumber(p.totalFrames, 0)}`
      : fmtNumber(p.currentFrame, 0);
    $('#run-fps').textContent = p.fps > 0 ? `${fmtNumber(p.fps, 1)} frames/s` : '–';
    $('#run-eta').textContent = p.status === 'processing' && p.etaSeconds > 0 ? fmtSeconds(p.etaSeconds) : '–';
    $('#run-stage').textContent = p.stage || '–';
    if (state.task && p.status && p.status !== state.task.status) {
      state.task = Object.assign({}, state.task, { status: p.status, progress: p.progress, stage: p.stage });
      renderTaskStatus(state.task);
      updateButtons();
      refreshTasks();
    }
  }

  // ---------- following a running task ----------

  function stopFollowing() {
    if (state.events) {
      state.events.close();
      state.events = null;
    }
    clearTimeout(state.pollTimer);
    state.pollTimer = 0;
  }

  function follow(task) {
    stopFollowing();
    const gen = state.generation;
    const id = task.taskId;
    const url = `/api/events/${encodeURIComponent(id)}` + (state.apiKey ? `?api_key=${encodeURIComponent(state.apiKey)}` : '');
    let es;
    try {
      es = new EventSource(url);
    } catch (_) {
      poll(id, gen);
      return;
    }
    state.events = es;
    es.addEventListener('progress', (e) => {
      if (gen !== state.generation) return;
      try {
        renderProgress(JSON.parse(e.data));
      } catch (_) {
        /* a malformed event is skipped */
      }
    });
    es.addEventListener('done', (e) => {
      es.close();
      if (state.events === es) state.events = null;
      if (gen !== state.generation) return;
      let done = null;
      try {
        done = JSON.parse(e.data);
      } catch (_) {
        done = null;
      }
      if (done && done.status === 'deleted') {
        finish(Object.assign({}, state.task, { status: 'deleted' }));
      } else if (done && done.taskId) {
        finish(done);
      } else {
        poll(id, gen);
      }
    });
    es.addEventListener('error', () => {
      // EventSource retries by itself while the connection is merely broken; when it gives up
      // (an error answer), progress is polled instead.
      if (es.readyState === EventSource.CLOSED && state.events === es) {
        state.events = null;
        if (gen === state.generation) poll(id, gen);
      }
    });
  }

  async function poll(id, gen) {
    if (gen !== state.generation) return;
    try {
      const task = await api('GET', `/api/status/${encodeURIComponent(id)}`);
      if (gen !== state.generation) return;
      if (RUNNING.has(task.status)) {
        try {
          renderProgress(await api('GET', `/api/progress/${encodeURIComponent(id)}`));
        } catch (_) {
          /* the status alone will do */
        }
        state.pollTimer = setTimeout(() => poll(id, gen), 1000);
      } else {
        finish(task);
      }
    } catch (err) {
      if (gen !== state.generation) return;
      if (err.status === 404) {
        finish(Object.assign({}, state.task, { status: 'deleted' }));
        return;
      }
      showError($('#run-error'), err);
      state.pollTimer = setTimeout(() => poll(id, gen), 3000);
    }
  }

  function finish(task) {
    stopFollowing();
    if (task.status === 'completed') setProgress(100);
    setTask(task);
    $('#run-stage').textContent = task.stage || STATUS_WORDS[task.status] || '–';
    $('#run-eta').textContent = '–';
    refreshTasks();
  }

  async function startTask() {
    if (state.starting) return;
    state.starting = true;
    updateButtons();
    showError($('#run-error'), null);
    try {
      let task = state.task;
      if (!task || task.status !== 'draft') {
        $('#run-status').textContent = 'Uploading the video again for a new run…';
        task = await sendDraft();
      }
      $('#run-status').textContent = 'Starting…';
      const started = await api('POST', `/api/start/${encodeURIComponent(task.taskId)}`, currentSettings());
      resetProgress();
      setTask(started);
      follow(started);
      refreshTasks();
    } catch (err) {
      if (err.code !== 'aborted') {
        showError($('#run-error'), err);
        if (state.task) renderTaskStatusKeepError();
        else $('#run-status').textContent = 'Not started.';
      }
    } finally {
      state.starting = false;
      updateButtons();
    }
  }

  function renderTaskStatusKeepError() {
    const msg = $('#run-error').textContent;
    renderTaskStatus(state.task);
    if (msg) {
      $('#run-error').textContent = msg;
      $('#run-error').hidden = false;
    }
  }

  async function cancelTask(id) {
    const current = state.task && state.task.taskId === id;
    const button = $('#cancel-button');
    if (current) {
      button.disabled = true;
      $('#run-status').textContent = 'Cancelling…';
    }
    try {
      const task = await api('POST', `/api/cancel/${encodeURIComponent(id)}`);
      if (current && state.task && state.task.taskId === id) {
        if (RUNNING.has(task.status)) {
          // The worker has not confirmed yet; the event stream reports when it does.
          $('#run-status').textContent = 'Cancelling… the server is stopping the work.';
        } else {
          finish(task);
        }
      }
    } catch (err) {
      if (current) {
        showError($('#run-error'), err);
        if (state.task) renderTaskStatusKeepError();
      } else {
        showError($('#tasks-error'), err);
      }
    } finally {
      if (current) updateButtons();
      refreshTasks();
    }
  }

  // ---------- results ----------

  function showDone(task) {
    const done = $('#done-panel');
    const link = $('#download-link');
    if (task.downloadUrl) {
      link.href = task.downloadUrl;
      link.removeAttribute('aria-disabled');
    } else {
      link.removeAttribute('href');
      link.setAttribute('aria-disabled', 'true');
    }
    const base = (task.inputName || 'video').replace(/\.[^.]+$/, '');
    const scale = task.input && task.output && task.input.width ? Math.round(task.output.width / task.input.width) : '';
    link.setAttribute('download', `${base}-x${scale || 'vsr'}.${(task.downloadUrl || '').includes('.mkv') ? 'mkv' : 'mp4'}`);
    const bits = [fmtSize(task.output && task.output.width, task.output && task.output.height)];
    if (task.output && typeof task.output.bytes === 'number') bits.push(fmtMB(task.output.bytes));
    if (task.expiresAt) bits.push(`kept until ${new Date(task.expiresAt).toLocaleString()}`);
    $('#download-size').textContent = bits.filter(Boolean).join(' · ');
    const wasHidden = done.hidden;
    done.hidden = false;
    if (wasHidden) loadResultFrame();
  }

  async function loadResultFrame() {
    const task = state.task;
    if (!task || task.status !== 'completed') return;
    const gen = state.generation;
    const time = Number($('#result-time').value);
    const status = $('#result-status');
    const button = $('#result-button');
    button.disabled = true;
    status.textContent = `Fetching the frame at ${fmtTime(time)}…`;
    showError($('#result-error'), null);
    try {
      const r = await api('GET', `/api/frames/${encodeURIComponent(task.taskId)}?time=${encodeURIComponent(time.toFixed(3))}`);
      if (gen !== state.generation) return;
      await resultCompare.load(r.before, r.after, r.outputWidth, r.outputHeight);
      show($('#result-compare'), true);
      resultCompare.setCaption(`Source ${fmtSize(r.width, r.height)} · result ${fmtSize(r.outputWidth, r.outputHeight)} · at ${fmtTime(r.time)}`);
      status.textContent = '';
    } catch (err) {
      if (gen !== state.generation) return;
      status.textContent = '';
      showError($('#result-error'), err);
    } finally {
      button.disabled = false;
    }
  }

  async function runPreview() {
    if (state.previewing) return;
    state.previewing = true;
    updateButtons();
    const status = $('#preview-status');
    showError($('#preview-error'), null);
    const started = performance.now();
    let ticker = 0;
    try {
      let task = state.task;
      if (!task || !(task.status === 'draft' || RUNNING.has(task.status))) {
        status.textContent = 'Uploading the video again…';
        task = await sendDraft();
      }
      const gen = state.generation;
      const time = Number($('#preview-time').value);
      const tick = () => {
        status.textContent = `Upscaling the frame at ${fmtTime(time)}… ${Math.round((performance.now() - started) / 1000)} s`;
      };
      tick();
      ticker = setInterval(tick, 1000);
      const r = await api('POST', `/api/preview/${encodeURIComponent(task.taskId)}`, { time, settings: currentSettings() });
      if (gen !== state.generation) return;
      await previewCompare.load(r.before, r.after, r.outputWidth, r.outputHeight);
      show($('#preview-compare'), true);
      previewCompare.setCaption(`Source ${fmtSize(r.width, r.height)} → ${fmtSize(r.outputWidth, r.outputHeight)} · frame at ${fmtTime(r.time)}`);
      const took = $('#preview-took');
      const windows = r.stabilised ? r.stabilised.frames.length : 0;
      took.textContent = windows
        ? `Took ${fmtNumber(r.seconds, 2)} s for one frame and a window of ${windows} in a row.`
        : `Took ${fmtNumber(r.seconds, 2)} s for one frame.`;
      show(took, true);
      const ul = $('#preview-notes');
      ul.replaceChildren();
      if (Array.isArray(r.models) && r.models.length) ul.append(el('li', { text: `Models: ${r.models.join(' → ')}` }));
      for (const n of r.notes || []) ul.append(el('li', { text: sentence(n) }));
      show(ul, ul.children.length > 0);
      await stabilised.load(r.stabilised);
      status.textContent = '';
    } catch (err) {
      status.textContent = '';
      if (err.code !== 'aborted') showError($('#preview-error'), err);
    } finally {
      clearInterval(ticker);
      state.previewing = false;
      updateButtons();
    }
  }

  function updateTimeOutputs() {
    $('#preview-time-value').textContent = fmtTime($('#preview-time').value);
    $('#result-time-value').textContent = fmtTime($('#result-time').value);
    $('#preview-time').setAttribute('aria-valuetext', fmtTime($('#preview-time').value));
    $('#result-time').setAttribute('aria-valuetext', fmtTime($('#result-time').value));
  }

  // ---------- before/after comparison ----------

  function makeCompare(slot) {
    const root = $('#compare-template').content.firstElementChild.cloneNode(true);
    slot.append(root);
    const view = $('.compare-view', root);
    const before = $('.img-before', root);
    const after = $('.img-after', root);
    const layerAfter = $('.layer-after', root);
    const divider = $('.divider', root);
    const caption = $('.compare-caption', root);
    const zoomButtons = $$('.zoom', root);
    const v = { pos: 50, zoom: 1, tx: 0, ty: 0 };

    function setPos(p) {
      v.pos = Math.max(0, Math.min(100, p));
      const r = Math.round(v.pos * 10) / 10;
      layerAfter.style.clipPath = `inset(0 0 0 ${v.pos}%)`;
      divider.style.left = `${v.pos}%`;
      divider.setAttribute('aria-valuenow', String(Math.round(v.pos)));
      divider.setAttribute('aria-valuetext', `${r}% of the width shows before`);
    }

    function clampPan() {
      const w = view.clientWidth;
      const h = view.clientHeight;
      v.tx = Math.min(0, Math.max(w - w * v.zoom, v.tx));
      v.ty = Math.min(0, Math.max(h - h * v.zoom, v.ty));
    }

    function applyTransform() {
      clampPan();
      const t = `translate(${v.tx}px, ${v.ty}px) scale(${v.zoom})`;
      before.style.transform = t;
      after.style.transform = t;
      root.dataset.zoom = String(v.zoom);
      view.classList.toggle('zoomed', v.zoom > 1);
    }

    function setZoom(z, cx, cy) {
      const w = view.clientWidth;
      const h = view.clientHeight;
      const px = cx === undefined ? w / 2 : cx;
      const py = cy === undefined ? h / 2 : cy;
      const k = z / v.zoom;
      v.tx = px - (px - v.tx) * k;
      v.ty = py - (py - v.ty) * k;
      v.zoom = z;
      for (const b of zoomButtons) b.setAttribute('aria-pressed', String(Number(b.dataset.zoom) === z));
      applyTransform();
    }

    for (const b of zoomButtons) b.addEventListener('click', () => setZoom(Number(b.dataset.zoom)));
    $('.pixelated-toggle', root).addEventListener('change', (e) => root.classList.toggle('pixelated', e.target.checked));

    // Pointer: the divider's handle always moves it; elsewhere a drag pans when zoomed and
    // moves the divider when not.
    let drag = null;
    function posFromEvent(e) {
      const rect = view.getBoundingClientRect();
      return ((e.clientX - rect.left) / rect.width) * 100;
    }
    view.addEventListener('pointerdown', (e) => {
      if (e.button !== 0) return;
      const onDivider = e.target === divider || divider.contains(e.target);
      if (onDivider || v.zoom === 1) {
        drag = { kind: 'divider' };
        setPos(posFromEvent(e));
        if (onDivider) divider.focus();
      } else {
        drag = { kind: 'pan', x: e.clientX, y: e.clientY, tx: v.tx, ty: v.ty };
        view.classList.add('panning');
      }
      view.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    view.addEventListener('pointermove', (e) => {
      if (!drag) return;
      if (drag.kind === 'divider') setPos(posFromEvent(e));
      else {
        v.tx = drag.tx + (e.clientX - drag.x);
        v.ty = drag.ty + (e.clientY - drag.y);
        applyTransform();
      }
    });
    const endDrag = (e) => {
      if (!drag) return;
      drag = null;
      view.classList.remove('panning');
      if (view.hasPointerCapture(e.pointerId)) view.releasePointerCapture(e.pointerId);
    };
    view.addEventListener('pointerup', endDrag);
    view.addEventListener('pointercancel', endDrag);
    view.addEventListener('dblclick', (e) => {
      const rect = view.getBoundingClientRect();
      const next = v.zoom === 1 ? 2 : v.zoom === 2 ? 4 : 1;
      setZoom(next, e.clientX - rect.left, e.clientY - rect.top);
    });
    // Ctrl + wheel zooms (plain wheel keeps scrolling the page); wheel pans when zoomed and
    // Shift is held.
    view.addEventListener('wheel', (e) => {
      if (e.ctrlKey) {
        e.preventDefault();
        const rect = view.getBoundingClientRect();
        const steps = [1, 2, 4];
        const i = steps.indexOf(v.zoom);
        const next = steps[Math.max(0, Math.min(steps.length - 1, i + (e.deltaY < 0 ? 1 : -1)))];
        if (next !== v.zoom) setZoom(next, e.clientX - rect.left, e.clientY - rect.top);
      } else if (v.zoom > 1 && e.shiftKey) {
        e.preventDefault();
        v.tx -= e.deltaX || e.deltaY;
        applyTransform();
      }
    }, { passive: false });

    divider.addEventListener('keydown', (e) => {
      const step = e.shiftKey ? 10 : 2;
      const keys = {
        ArrowLeft: -step,
        ArrowDown: -step,
        ArrowRight: step,
        ArrowUp: step,
        PageDown: -10,
        PageUp: 10,
      };
      if (e.key in keys) setPos(v.pos + keys[e.key]);
      else if (e.key === 'Home') setPos(0);
      else if (e.key === 'End') setPos(100);
      else return;
      e.preventDefault();
      e.stopPropagation();
    });
    view.addEventListener('keydown', (e) => {
      if (e.target !== view) return;
      const d = 40;
      const keys = { ArrowLeft: [d, 0], ArrowRight: [-d, 0], ArrowUp: [0, d], ArrowDown: [0, -d] };
      if (e.key in keys && v.zoom > 1) {
        v.tx += keys[e.key][0];
        v.ty += keys[e.key][1];
        applyTransform();
        e.preventDefault();
      } else if (e.key === '+' || e.key === '=') {
        setZoom(v.zoom === 1 ? 2 : 4);
        e.preventDefault();
      } else if (e.key === '-') {
        setZoom(v.zoom === 4 ? 2 : 1);
        e.preventDefault();
      }
    });

    if ('ResizeObserver' in window) new ResizeObserver(() => applyTransform()).observe(view);

    function loadImg(img, src) {
      return new Promise((resolve, reject) => {
        img.onload = () => resolve();
        img.onerror = () => reject(new Error('The image could not be shown.'));
        img.src = src;
        if (img.complete && img.naturalWidth > 0) resolve();
      });
    }

    setPos(50);
    return {
      root,
      async load(beforeSrc, afterSrc, w, h) {
        if (w > 0 && h > 0) view.style.aspectRatio = `${w} / ${h}`;
        await Promise.all([loadImg(before, beforeSrc), loadImg(after, afterSrc)]);
        if (!(w > 0 && h > 0) && after.naturalWidth) view.style.aspectRatio = `${after.naturalWidth} / ${after.naturalHeight}`;
        applyTransform();
      },
      setCaption(text) {
        caption.textContent = text;
      },
    };
  }

  let previewCompare;
  let resultCompare;

  // ---------- consecutive frames with and without the stabiliser ----------

  // Flipping through a few consecutive frames is what shows shimmer: texture that crawls
  // without the stabiliser and holds still with it. It plays by itself unless the user asked
  // for less motion.
  function makeStabilised() {
    const root = $('#stabilised');
    const slider = $('#stabilised-frame');
    const play = $('#stabilised-play');
    const FRAME_MS = 250;
    let frames = [];
    let timer = 0;

    function showFrame(i) {
      const f = frames[i];
      if (!f) return;
      slider.value = String(i);
      $('#stabilised-without').src = f.without;
      $('#stabilised-with').src = f.with;
      const label = `${i + 1} of ${frames.length} · ${fmtTime(f.time)}`;
      $('#stabilised-frame-value').textContent = label;
      slider.setAttribute('aria-valuetext', label);
      root.dataset.frame = String(i);
    }

    function setPlaying(on) {
      clearInterval(timer);
      timer = 0;
      if (on && frames.length > 1) {
        timer = setInterval(() => showFrame((Number(slider.value) + 1) % frames.length), FRAME_MS);
      }
      play.textContent = timer ? 'Pause' : 'Play';
      play.setAttribute('aria-pressed', timer ? 'true' : 'false');
    }

    function preload(src) {
      return new Promise((resolve) => {
        const img = new Image();
        img.onload = img.onerror = () => resolve();
        img.src = src;
      });
    }

    play.addEventListener('click', () => setPlaying(!timer));
    slider.addEventListener('input', () => {
      setPlaying(false);
      showFrame(Number(slider.value));
    });

    return {
      // `s`: a preview's `stabilised` (null hides the section).
      async load(s) {
        setPlaying(false);
        frames = s && Array.isArray(s.frames) ? s.frames : [];
        show(root, frames.length > 0);
        if (!frames.length) return;
        await Promise.all(frames.flatMap((f) => [preload(f.without), preload(f.with)]));
        const w = s.window;
        $('#stabilised-where').textContent = `A ${fmtSize(w.width, w.height)} window of the output at full size, ${frames.length} frames in a row from ${fmtTime(frames[0].time)}. The first frame has no previous one and comes out the same.`;
        $('#stabilised-with-caption').textContent = `With (${s.temporalStability})`;
        slider.max = String(frames.length - 1);
        const later = frames.slice(1);
        const mean = (key) => later.reduce((a, f) => a + f[key], 0) / Math.max(later.length, 1);
        $('#stabilised-change').textContent = later.length
          ? `Flicker (change from one frame to the next that the source does not show), mean over the window: ${fmtNumber(mean('flickerWithout'), 2)} levels of 255 without, ${fmtNumber(mean('flickerWith'), 2)} with.`
          : '';
        showFrame(0);
        const still = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
        setPlaying(!still);
      },
    };
  }

  let stabilised;

  // ---------- task list ----------

  async function refreshTasks() {
    clearTimeout(state.listTimer);
    let again = false;
    try {
      const page = await api('GET', '/api/tasks?page=1&perPage=20');
      renderTasks(page);
      showError($('#tasks-error'), null);
      again = (page.tasks || []).some((t) => RUNNING.has(t.status));
    } catch (err) {
      showError($('#tasks-error'), err);
      again = err.status !== 401;
    }
    if (state.task && RUNNING.has(state.task.status)) again = true;
    state.listTimer = setTimeout(refreshTasks, again ? 3000 : 30000);
  }

  function renderTasks(page) {
    const tasks = page.tasks || [];
    const body = $('#tasks-body');
    const focused = document.activeElement && body.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
    body.replaceChildren();
    for (const t of tasks) {
      const name = t.inputName || t.taskId;
      const out = t.output || {};
      const outText = [out.width ? fmtSize(out.width, out.height) : '', typeof out.bytes === 'number' ? fmtMB(out.bytes) : ''].filter(Boolean).join(' · ');
      const statusCell = el('td', { 'data-label': 'Status', class: 'status-cell' }, el('span', { class: 'cell-line' },
        el('span', { class: `badge badge-${t.status}`, 'data-testid': 'task-status', text: STATUS_WORDS[t.status] || t.status }),
        RUNNING.has(t.status) && typeof t.progress === 'number' ? el('span', { class: 'muted', text: ` ${fmtNumber(t.progress, 0)}%` }) : null));
      const actions = el('td', { 'data-label': 'Actions', class: 'actions-cell' });
      const open = el('button', { type: 'button', class: 'button secondary small', 'data-focus-key': `open-${t.taskId}`, 'aria-label': `Open ${name}`, text: 'Open' });
      open.addEventListener('click', () => openTask(t));
      actions.append(open);
      if (RUNNING.has(t.status)) {
        const c = el('button', { type: 'button', class: 'button secondary small', 'data-focus-key': `cancel-${t.taskId}`, 'data-testid': 'task-cancel', 'aria-label': `Cancel ${name}`, text: 'Cancel' });
        c.addEventListener('click', () => cancelTask(t.taskId));
        actions.append(c);
      }
      const del = el('button', { type: 'button', class: 'button danger-outline small', 'data-focus-key': `delete-${t.taskId}`, 'data-testid': 'task-delete', 'aria-label': `Delete ${name}`, text: 'Delete' });
      del.addEventListener('click', () => deleteTask(t));
      actions.append(del);
      const created = el('td', { 'data-label': 'Created' });
      if (t.createdAt) created.append(el('time', { datetime: t.createdAt, title: new Date(t.createdAt).toLocaleString(), text: fmtDate(t.createdAt) }));
      const expires = el('td', { 'data-label': 'Expires' });
      if (t.expiresAt) expires.append(el('time', { datetime: t.expiresAt, title: new Date(t.expiresAt).toLocaleString(), text: fmtRelative(t.expiresAt) }));
      else expires.append(el('span', { class: 'muted', text: '–' }));
      const row = el('tr', { 'data-task-id': t.taskId, 'data-status': t.status, class: state.task && state.task.taskId === t.taskId ? 'current' : null },
        el('td', { 'data-label': 'Video', class: 'name-cell' }, el('span', { class: 'name', title: name, text: name })),
        statusCell,
        created,
        el('td', { 'data-label': 'Result', text: outText || '–' }),
        expires,
        actions);
      body.append(row);
    }
    if (focused) {
      const again = body.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
    show($('#tasks-table'), tasks.length > 0);
    show($('#tasks-empty'), tasks.length === 0);
    const pager = $('#tasks-pager');
    if (page.total > tasks.length) {
      pager.textContent = `Showing the newest ${tasks.length} of ${page.total} tasks.`;
      pager.hidden = false;
    } else pager.hidden = true;
  }

  async function deleteTask(t) {
    try {
      await api('DELETE', `/api/tasks/${encodeURIComponent(t.taskId)}`);
      if (state.task && state.task.taskId === t.taskId) {
        const file = state.file;
        clearTask();
        state.file = file;
        if (file) $('#run-status').textContent = 'The task was deleted. Upscale again to make a new one.';
        updateButtons();
      }
    } catch (err) {
      showError($('#tasks-error'), err);
    } finally {
      refreshTasks();
    }
  }

  async function openTask(t) {
    let task = t;
    try {
      task = await api('GET', `/api/status/${encodeURIComponent(t.taskId)}`);
    } catch (err) {
      showError($('#tasks-error'), err);
      return;
    }
    clearTask();
    state.file = null;
    show($('#file-name'), true);
    $('#file-name').textContent = `${task.inputName || 'Video'} (opened from the list)`;
    setTask(task);
    if (RUNNING.has(task.status)) follow(task);
    if (task.status !== 'draft' && !RUNNING.has(task.status)) {
      $('#run-status').textContent += ' Choose the video again to preview or upscale it with other settings.';
    }
    $('#run-panel').scrollIntoView({ behavior: 'smooth', block: 'start' });
    $('#run-status').focus({ preventScroll: true });
    refreshTasks();
  }

  // ---------- start ----------

  function init() {
    previewCompare = makeCompare($('#preview-compare'));
    resultCompare = makeCompare($('#result-compare'));
    stabilised = makeStabilised();
    setupAuth();
    setupSettings();
    setupDropZone();
    $('#run-status').tabIndex = -1;
    $('#preview-button').addEventListener('click', runPreview);
    $('#start-button').addEventListener('click', startTask);
    $('#cancel-button').addEventListener('click', () => state.task && cancelTask(state.task.taskId));
    $('#result-button').addEventListener('click', loadResultFrame);
    $('#tasks-refresh').addEventListener('click', refreshTasks);
    $('#preview-time').addEventListener('input', updateTimeOutputs);
    $('#result-time').addEventListener('input', updateTimeOutputs);
    $('#download-link').addEventListener('click', (e) => {
      if (!e.currentTarget.getAttribute('href')) e.preventDefault();
    });
    updateTimeOutputs();
    updateButtons();
    loadCatalog();
    refreshTasks();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
