// Salve dashboard: the actions and live updates. Every action is a call to
// the JSON API (/v1/...), authenticated by the session cookie and marked
// with the X-Salve-Request header the API requires of cookie-authenticated
// POSTs; the API authorizes, validates and audits it. No innerHTML: text
// from the server goes into the page with textContent only.
(function () {
  'use strict';

  // The run events the API streams (event: names), see docs/operate.md.
  var RUN_EVENTS = [
    'run.started', 'run.finished', 'run.joined', 'run.signalled', 'run.launched', 'run.cancel_requested',
    'trigger.matched', 'trigger.suppressed',
    'step.started', 'step.succeeded', 'step.failed', 'step.skipped', 'step.planned',
    'approval.requested', 'approval.granted', 'approval.rejected', 'approval.timed_out', 'approval.skipped',
    'credential.issued', 'credential.revoked', 'credential.revoke_failed', 'end'
  ];

  function runPath(id) {
    return '/v1/runs/' + encodeURIComponent(id);
  }

  function randomKey() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return ('0' + x.toString(16)).slice(-2); }).join('');
  }

  // api calls the JSON API and resolves to the decoded body; a refusal
  // rejects with the API's own error text.
  function api(method, path, body, headers) {
    var h = { 'Accept': 'application/json', 'X-Salve-Request': '1' };
    if (body !== undefined) { h['Content-Type'] = 'application/json'; }
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(path, {
      method: method,
      credentials: 'same-origin',
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!resp.ok) {
          var msg = (data && data.error) ? data.error : (resp.status + ' ' + resp.statusText);
          if (resp.status === 401) { msg += ' (your session may have ended: sign in again)'; }
          var err = new Error(msg);
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  function el(tag, attrs) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'text') { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) { continue; }
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }

  function say(form, text, kind) {
    var m = form.querySelector('[data-msg]');
    if (!m) { return; }
    m.textContent = text;
    m.className = 'msg msg-' + kind;
    m.hidden = false;
  }

  function busy(form, on) {
    form.querySelectorAll('button').forEach(function (b) { b.disabled = on; });
  }

  // ---- approve / reject ----
  function decide(form, approve) {
    var reason = form.querySelector('[name=reason]').value.trim();
    if (!reason) { say(form, 'A reason is required: it goes into the audit log.', 'error'); return; }
    // Bound to what the person looked at: this run, this step.
    var body = { reason: reason };
    if (form.dataset.runId) { body.runId = form.dataset.runId; }
    if (form.dataset.step) { body.step = form.dataset.step; }
    busy(form, true);
    say(form, approve ? 'Approving…' : 'Rejecting…', 'info');
    api('POST', runPath(form.dataset.run) + (approve ? '/approve' : '/reject'), body).then(function (res) {
      say(form, 'Recorded: ' + res.decision + ' by ' + res.by + '.', 'ok');
      form.querySelectorAll('textarea, button').forEach(function (x) { x.disabled = true; });
      var row = form.closest('tr.approval');
      if (row) { row.classList.add('decided'); row.dataset.decision = res.decision; }
      if (document.getElementById('run-root')) { refreshSoon(600); }
    }).catch(function (err) {
      busy(form, false);
      say(form, err.message, 'error');
    });
  }

  // ---- cancel ----
  function cancelRun(form) {
    var reason = form.querySelector('[name=reason]').value.trim();
    if (!reason) { say(form, 'Say why you cancel the run: it goes into the audit log.', 'error'); return; }
    busy(form, true);
    var body = { reason: reason };
    if (form.dataset.runId) { body.runId = form.dataset.runId; }
    api('POST', runPath(form.dataset.run) + '/cancel', body).then(function () {
      say(form, 'Cancel requested; the run stops its current step and compensates if a step acted.', 'ok');
      form.querySelectorAll('textarea, button').forEach(function (x) { x.disabled = true; });
      refreshSoon(800);
    }).catch(function (err) {
      busy(form, false);
      say(form, err.message, 'error');
    });
  }

  // ---- launch and dry-run plan ----
  function launchBody(form) {
    var params = {};
    form.querySelectorAll('[data-param]').forEach(function (input) {
      var name = input.dataset.param;
      if (input.type === 'checkbox') { params[name] = input.checked ? 'true' : 'false'; return; }
      var v = input.value.trim();
      if (v !== '') { params[name] = v; }
    });
    var body = { params: params };
    var key = form.querySelector('[name=incidentKey]').value.trim();
    var reason = form.querySelector('[name=reason]').value.trim();
    if (key) { body.incidentKey = key; }
    if (reason) { body.reason = reason; }
    return body;
  }

  function launch(form, preview) {
    var body = launchBody(form);
    var path = '/v1/runbooks/' + encodeURIComponent(form.dataset.runbook) + '/launch';
    var plan = document.getElementById('plan');
    busy(form, true);
    if (preview) {
      body.dryRun = true;
      say(form, 'Planning…', 'info');
      api('POST', path, body).then(function (res) {
        busy(form, false);
        say(form, 'Dry run: nothing was started. This is what a launch with these params would do.', 'ok');
        renderPlan(plan, res.plan);
      }).catch(function (err) {
        busy(form, false);
        plan.hidden = true;
        say(form, err.message, 'error');
      });
      return;
    }
    if (!form.dataset.idem) { form.dataset.idem = randomKey(); }
    say(form, 'Launching…', 'info');
    api('POST', path, body, { 'Idempotency-Key': form.dataset.idem }).then(function (res) {
      say(form, 'Launched ' + res.workflowId + '.', 'ok');
      window.location.assign('/ui/runs/' + encodeURIComponent(res.workflowId) + '?runId=' + encodeURIComponent(res.runId));
    }).catch(function (err) {
      busy(form, false);
      form.dataset.idem = ''; // a refused launch started nothing: the next try is a new one
      say(form, err.message, 'error');
    });
  }

  function yes(b) { return b ? 'yes' : 'no'; }

  function table(headers, rows) {
    var thead = el('thead', {}, el('tr', {}));
    headers.forEach(function (h) { thead.firstChild.appendChild(el('th', { text: h })); });
    var tbody = el('tbody');
    rows.forEach(function (cells) {
      var tr = el('tr');
      cells.forEach(function (c) { tr.appendChild(typeof c === 'string' ? el('td', { text: c }) : el('td', {}, c)); });
      tbody.appendChild(tr);
    });
    return el('table', { 'class': 'grid-table' }, thead, tbody);
  }

  function stepRows(steps) {
    return (steps || []).map(function (s, i) {
      var tags = el('span');
      if (s.mutating) { tags.appendChild(el('span', { 'class': 'tag tag-mutating', text: 'mutating' })); }
      if (s.approval) { tags.appendChild(el('span', { 'class': 'tag tag-approval', text: 'approval' })); }
      var withCell = s['with'] ? el('pre', { text: JSON.stringify(s['with'], null, 2) }) : '';
      var notes = el('div');
      if (s.when) { notes.appendChild(el('div', {}, 'when ', el('code', { text: s.when }))); }
      if (s.note) { notes.appendChild(el('div', { 'class': 'muted', text: s.note })); }
      return [String(i + 1), el('strong', { text: s.name }), el('code', { text: s.action }), tags, s.credential || '', withCell, notes];
    });
  }

  function renderPlan(box, plan) {
    box.textContent = '';
    if (!plan) { box.hidden = true; return; }
    box.appendChild(el('h3', { text: 'Plan (dry run) — nothing was started' }));
    var facts = el('dl', { 'class': 'facts' });
    [['runbook', plan.runbook], ['incident key', plan.incidentKey], ['mode', plan.mode], ['runbook version', (plan.runbookHash || '').slice(0, 12)]].forEach(function (f) {
      facts.appendChild(el('dt', { text: f[0] }));
      facts.appendChild(el('dd', { text: f[1] || '' }));
    });
    box.appendChild(facts);
    var params = Object.keys(plan.params || {}).sort().map(function (k) { return [k, plan.params[k]]; });
    if (params.length) {
      box.appendChild(el('h3', { text: 'Resolved params' }));
      box.appendChild(table(['param', 'value'], params));
    }
    var heads = ['#', 'step', 'action', '', 'credential', 'with (rendered)', 'notes'];
    box.appendChild(el('h3', { text: 'Steps' }));
    var st = table(heads, stepRows(plan.steps));
    st.id = 'plan-steps';
    box.appendChild(st);
    if (plan.onFailure && plan.onFailure.length) {
      box.appendChild(el('h3', { text: 'On failure' }));
      box.appendChild(table(heads, stepRows(plan.onFailure)));
    }
    box.appendChild(el('h3', { text: 'Approvals' }));
    if (plan.approvals && plan.approvals.length) {
      box.appendChild(table(['before', 'timeout', 'then'], plan.approvals.map(function (a) {
        return [a.step ? 'step ' + a.step : 'the first step (whole run)', a.timeout, a.onTimeout];
      })));
    } else {
      box.appendChild(el('p', { 'class': 'muted', text: 'The run would not wait for anyone.' }));
    }
    box.appendChild(el('h3', { text: 'Credentials' }));
    if (plan.credentials && plan.credentials.length) {
      box.appendChild(table(['source', 'Vault role', 'TTL', 'steps'], plan.credentials.map(function (c) {
        return [c.source, c.role, c.ttl || '', (c.steps || []).join(', ')];
      })));
    } else {
      box.appendChild(el('p', { 'class': 'muted', text: 'No credentials would be requested.' }));
    }
    if (plan.safety && plan.safety.length) {
      box.appendChild(el('h3', { text: 'Safety' }));
      box.appendChild(table(['setting', 'value', 'enforced'], plan.safety.map(function (s) {
        return [s.name, s.setting, s.enforced ? 'enforced' : el('span', { 'class': 'tag tag-off', text: 'not enforced in this version' })];
      })));
    }
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
  }

  // ---- live updates of a run page ----
  var refreshTimer = null;

  // refresh re-reads this page and swaps in its [data-live] sections,
  // except one a person is typing in.
  // Refreshes can overlap; only the newest may swap sections in, so an
  // older, slower answer never overwrites a newer one.
  var refreshGen = 0;
  function refresh() {
    var gen = ++refreshGen;
    return fetch(window.location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } }).then(function (resp) {
      if (!resp.ok) { throw new Error('reload: ' + resp.status); }
      return resp.text();
    }).then(function (html) {
      if (gen !== refreshGen) { return; }
      var doc = new DOMParser().parseFromString(html, 'text/html');
      document.querySelectorAll('[data-live]').forEach(function (old) {
        var fresh = old.id ? doc.getElementById(old.id) : null;
        if (!fresh) { return; }
        var typing = Array.prototype.some.call(old.querySelectorAll('textarea, input[type=text]'), function (f) {
          return f.value !== '' && !f.disabled;
        });
        if (typing) { return; }
        var node = document.importNode(fresh, true);
        keepMessage(old, node);
        old.replaceWith(node);
      });
      var freshRoot = doc.getElementById('run-root');
      var root = document.getElementById('run-root');
      if (freshRoot && root) {
        root.dataset.running = freshRoot.dataset.running;
        root.dataset.after = freshRoot.dataset.after;
      }
    });
  }

  // keepMessage carries the answer to a person's action ("Cancel
  // requested", "Recorded: approve") into the section that replaces the
  // one it was shown in: a live refresh racing the answer must not make it
  // vanish before it was read.
  function keepMessage(old, fresh) {
    // Only the answer to a finished action (a success): progress and
    // input errors belong to a form a person is still using.
    var m = old.querySelector('.msg-ok[data-msg]:not([hidden])');
    if (!m || !m.textContent) { return; }
    // The form the answer belongs to: its own, or none when it already
    // stands on its own (carried before, above a newer form).
    var was = m.closest('form[data-action]');
    var now = fresh.querySelector('form[data-action]');
    var same = was && now && was.dataset.run === now.dataset.run && was.dataset.step === now.dataset.step;
    var target = same ? now.querySelector('[data-msg]') : null;
    if (!target) {
      // The form is gone (the run ended) or is a new one (the next
      // approval): the answer stands on its own above it.
      target = el('p', { 'data-msg': '' });
      if (now) { now.parentNode.insertBefore(target, now); } else { fresh.appendChild(target); }
    }
    target.textContent = m.textContent;
    target.className = m.className;
    target.hidden = false;
    // A done action stays done: the same form does not come back enabled.
    if (same) {
      now.querySelectorAll('textarea, button').forEach(function (x) { x.disabled = true; });
    }
  }

  function refreshSoon(ms) {
    if (refreshTimer) { return; }
    refreshTimer = window.setTimeout(function () {
      refreshTimer = null;
      refresh().catch(function () { /* the next event retries */ });
    }, ms);
  }

  function watchRun() {
    var root = document.getElementById('run-root');
    var status = document.getElementById('live-status');
    if (!root || root.dataset.running !== 'true' || !window.EventSource) {
      if (status) { status.textContent = ''; }
      return;
    }
    var url = runPath(root.dataset.run) + '/events?runId=' + encodeURIComponent(root.dataset.runId) +
      '&after=' + encodeURIComponent(root.dataset.after || '0');
    var es = new EventSource(url);
    var show = function (text, live) {
      status.textContent = '';
      if (live) { status.appendChild(el('span', { 'class': 'dot-live' })); }
      status.appendChild(document.createTextNode(text));
    };
    show('connecting to live updates…', false);
    es.onopen = function () { show('live', true); };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) { show('live updates ended', false); } else { show('reconnecting…', false); }
    };
    RUN_EVENTS.forEach(function (name) {
      es.addEventListener(name, function () {
        if (name === 'end') {
          es.close();
          show('run finished', false);
          refreshSoon(100);
          return;
        }
        refreshSoon(250);
      });
    });
  }

  // Which button submitted a form, for browsers without event.submitter.
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest ? ev.target.closest('form[data-action] button[type=submit]') : null;
    if (b) { b.form.dataset.clicked = b.value || ''; }
  });

  // One listener for every action form, also for sections swapped in by
  // a live refresh.
  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!form.matches || !form.matches('form[data-action]')) { return; }
    ev.preventDefault();
    var which = ev.submitter ? ev.submitter.value : form.dataset.clicked;
    switch (form.dataset.action) {
      case 'decide':
        // Never guess between approve and reject.
        if (which === 'approve' || which === 'reject') {
          decide(form, which === 'approve');
        } else {
          say(form, 'Press Approve or Reject.', 'error');
        }
        break;
      case 'cancel': cancelRun(form); break;
      // Enter in a field previews: launching takes the Launch button.
      case 'launch': launch(form, which !== 'launch'); break;
    }
  });

  document.addEventListener('DOMContentLoaded', watchRun);
})();
