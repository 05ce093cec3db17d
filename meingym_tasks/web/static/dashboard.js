// meingym-tasks dashboard: live counts, chart, consumers and job table by polling the JSON API.
// Plain JavaScript, no build step, no external resources. Data is written with textContent and
// DOM methods only (never innerHTML), so job arguments or errors holding HTML stay text.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var JOB_POLL_MS = 1500;
  var SVG = "http://www.w3.org/2000/svg";
  // The chart's geometry, as in meingym_tasks/web/presenters.py.
  var CHART = { width: 600, height: 150, left: 34, right: 4, top: 8, bottom: 20 };
  var body = document.body;

  // ------------------------------------------------------------------ helpers

  function relative(iso) {
    if (!iso) return "";
    var seconds = (Date.now() - Date.parse(iso)) / 1000;
    var ahead = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 10) return "just now";
    var amount;
    if (seconds < 60) amount = Math.floor(seconds) + " s";
    else if (seconds < 3600) amount = Math.floor(seconds / 60) + " min";
    else if (seconds < 86400) amount = Math.floor(seconds / 3600) + " h";
    else amount = Math.floor(seconds / 86400) + " d";
    return ahead ? "in " + amount : amount + " ago";
  }

  function absolute(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", " UTC") : "";
  }

  function refreshTimes(root) {
    var times = (root || document).querySelectorAll("time[data-relative]");
    for (var i = 0; i < times.length; i++) {
      times[i].textContent = relative(times[i].getAttribute("datetime"));
    }
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        if (key === "text") node.textContent = attrs[key];
        else node.setAttribute(key, attrs[key]);
      });
    }
    (children || []).forEach(function (child) {
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function when(iso) {
    if (!iso) return el("span", { "class": "muted", text: "–" });
    return el("time", { datetime: iso, title: absolute(iso), "data-relative": "", text: relative(iso) });
  }

  function badge(state) {
    return el("span", { "class": "badge state-" + state, text: state });
  }

  function formatSeconds(seconds) {
    seconds = Math.max(0, seconds);
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.floor(seconds % 60) + " s";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  function duration(job) {
    if (!job.started_at) return "";
    var end = job.finished_at ? Date.parse(job.finished_at) : job.state === "running" ? Date.now() : null;
    return end === null ? "" : formatSeconds((end - Date.parse(job.started_at)) / 1000);
  }

  function argumentsSummary(args) {
    if (!args) return "";
    var list = args.args || [];
    var kwargs = args.kwargs || {};
    var keys = Object.keys(kwargs).filter(function (k) { return k !== "parent_id"; }).sort();
    if (list.length === 1 && keys.length === 0 && Number.isInteger(list[0])) return "user " + list[0];
    var parts = list.map(function (a) { return JSON.stringify(a); });
    keys.forEach(function (k) { parts.push(k + "=" + JSON.stringify(kwargs[k])); });
    var text = parts.join(", ");
    return text.length <= 80 ? text : text.slice(0, 77) + "...";
  }

  var status = document.querySelector("[data-live-status]");

  function setStatus(text, stale) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("stale", !!stale);
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (r) {
      if (r.status === 401) throw new Error("session expired: reload the page to log in again");
      if (!r.ok) {
        return r.json().then(
          function (data) { throw new Error(data.message || "HTTP " + r.status); },
          function () { throw new Error("HTTP " + r.status); }
        );
      }
      return r.json();
    });
  }

  // ------------------------------------------------------------------ every page

  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });
  setInterval(refreshTimes, 15000);

  // The trigger form shows the fields of the chosen job: the server renders each job's fields (from the
  // job's declaration) into a <template>; choosing a job puts a copy of its template into the form.
  var action = document.querySelector("[data-trigger-action]");
  if (action) {
    var fieldsBox = document.querySelector("[data-job-fields]");
    var showFields = function () {
      var template = document.querySelector('template[data-fields-for="' + CSS.escape(action.value) + '"]');
      if (template) fieldsBox.replaceChildren(template.content.cloneNode(true));
    };
    action.addEventListener("change", showFields);
    showFields(); // also after the browser restored a choice on going back
  }

  // ------------------------------------------------------------------ dashboard

  function setCount(node, value) {
    var text = String(value);
    if (node.textContent !== text) {
      node.textContent = text;
      node.classList.remove("flash-up");
      void node.offsetWidth; // restart the highlight
      node.classList.add("flash-up");
    }
    node.classList.toggle("zero", value === 0);
  }

  function niceCeiling(value) {
    var top = 1;
    while (top < value) top = String(top)[0] === "2" ? (top * 5) / 2 : top * 2;
    return top;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawChart(chart, queue, series) {
    var plotWidth = CHART.width - CHART.left - CHART.right;
    var plotHeight = CHART.height - CHART.top - CHART.bottom;
    var base = CHART.top + plotHeight;
    var right = CHART.width - CHART.right;
    var completed = 0, failed = 0, peak = 0;
    series.forEach(function (p) {
      completed += p.complete;
      failed += p.failed;
      peak = Math.max(peak, p.complete + p.failed);
    });
    var top = niceCeiling(Math.max(peak, 1));
    var slot = plotWidth / Math.max(series.length, 1);
    var bar = Math.max(slot - 1.5, 1);
    while (chart.lastChild) chart.removeChild(chart.lastChild);
    chart.appendChild(svg("title", { id: "chart-" + queue + "-title" },
      queue + ": " + completed + " completed and " + failed + " failed in the last hour"));
    var grid = svg("g", { "class": "grid" });
    [CHART.top, CHART.top + plotHeight / 2, base].forEach(function (y, i) {
      grid.appendChild(svg("line", { x1: CHART.left, x2: right, y1: y, y2: y, "class": i === 2 ? "base" : "" }));
    });
    chart.appendChild(grid);
    var axis = svg("g", { "class": "axis" });
    axis.appendChild(svg("text", { x: CHART.left - 4, y: CHART.top + 4, "text-anchor": "end" }, String(top)));
    if (top > 1) {
      axis.appendChild(svg("text", { x: CHART.left - 4, y: CHART.top + plotHeight / 2 + 4, "text-anchor": "end" }, String(top / 2)));
    }
    axis.appendChild(svg("text", { x: CHART.left - 4, y: base + 4, "text-anchor": "end" }, "0"));
    axis.appendChild(svg("text", { x: CHART.left, y: CHART.height - 5 }, "60 min ago"));
    axis.appendChild(svg("text", { x: (CHART.left + right) / 2, y: CHART.height - 5, "text-anchor": "middle" }, "30 min ago"));
    axis.appendChild(svg("text", { x: right, y: CHART.height - 5, "text-anchor": "end" }, "now"));
    chart.appendChild(axis);
    var bars = svg("g", { "class": "bars" });
    series.forEach(function (p, i) {
      if (!p.complete && !p.failed) return;
      var x = CHART.left + i * slot;
      var ch = (plotHeight * p.complete) / top;
      var fh = (plotHeight * p.failed) / top;
      var group = svg("g", {});
      group.appendChild(svg("title", {}, (p.minute || "").slice(11, 16) + " UTC: " + p.complete + " completed, " + p.failed + " failed"));
      if (ch) group.appendChild(svg("rect", { "class": "complete", x: x.toFixed(2), y: (base - ch).toFixed(2), width: bar.toFixed(2), height: ch.toFixed(2) }));
      if (fh) group.appendChild(svg("rect", { "class": "failed", x: x.toFixed(2), y: (base - ch - fh).toFixed(2), width: bar.toFixed(2), height: fh.toFixed(2) }));
      bars.appendChild(group);
    });
    chart.appendChild(bars);
    var totals = document.querySelectorAll("[data-total]");
    for (var t = 0; t < totals.length; t++) {
      var key = totals[t].getAttribute("data-total").split("|");
      if (key[0] === queue) totals[t].textContent = String(key[1] === "complete" ? completed : failed);
    }
  }

  function renderConsumers(queues) {
    var tbody = document.querySelector("[data-consumers]");
    if (!tbody) return;
    var rows = [];
    Object.keys(queues).forEach(function (name) {
      queues[name].consumers.forEach(function (c) {
        rows.push(el("tr", {}, [
          el("td", { text: c.host }),
          el("td", { "class": "num", text: String(c.pid) }),
          el("td", { text: c.queue }),
          el("td", { "class": "num", text: c.workers + " " + c.worker_type }),
          el("td", {}, [when(c.started_at)]),
          el("td", {}, [when(c.last_seen_at)])
        ]));
      });
    });
    tbody.replaceChildren.apply(tbody, rows);
    document.querySelector("[data-no-consumers]").hidden = rows.length > 0;
    document.querySelector("[data-consumers-table]").hidden = rows.length === 0;
  }

  function renderQueues(data) {
    var queues = data.queues;
    var counts = document.querySelectorAll("[data-count]");
    for (var i = 0; i < counts.length; i++) {
      var key = counts[i].getAttribute("data-count").split("|");
      var info = queues[key[0]];
      if (info) setCount(counts[i], info.states[key[1]] || 0);
    }
    var brokers = document.querySelectorAll("[data-broker]");
    for (var b = 0; b < brokers.length; b++) {
      var bkey = brokers[b].getAttribute("data-broker").split("|");
      if (queues[bkey[0]]) brokers[b].textContent = String(queues[bkey[0]][bkey[1]]);
    }
    var unserved = document.querySelectorAll("[data-unserved]");
    for (var u = 0; u < unserved.length; u++) {
      var uq = queues[unserved[u].getAttribute("data-unserved")];
      if (uq) unserved[u].hidden = !uq.unserved;
    }
    var retryButtons = document.querySelectorAll("[data-retry-all]");
    for (var r = 0; r < retryButtons.length; r++) {
      var q = queues[retryButtons[r].getAttribute("data-retry-all")];
      if (q) retryButtons[r].disabled = !q.failed;
    }
    var charts = document.querySelectorAll("svg[data-chart]");
    for (var c = 0; c < charts.length; c++) {
      var name = charts[c].getAttribute("data-chart");
      if (queues[name]) drawChart(charts[c], name, queues[name].throughput);
    }
    renderConsumers(queues);
  }

  function jobRow(job, jobBase) {
    var href = jobBase.replace("JOB_ID", encodeURIComponent(job.job_id));
    var stateCell = el("td", {}, [badge(job.state)]);
    if (job.state === "running" && job.progress && job.progress.percent !== null) {
      stateCell.appendChild(document.createTextNode(" "));
      stateCell.appendChild(el("span", { "class": "muted", text: job.progress.percent + " %" }));
    }
    return el("tr", { "data-href": href }, [
      el("td", {}, [el("a", { href: href, text: job.name }), el("br"), el("code", { "class": "id", text: job.job_id.slice(0, 8) })]),
      el("td", { "class": "hide-sm", text: job.queue }),
      stateCell,
      el("td", { "class": "args", text: argumentsSummary(job.arguments) }),
      el("td", { "class": "num hide-sm", text: job.attempts + "/" + job.max_attempts }),
      el("td", {}, [when(job.enqueued_at)]),
      el("td", {}, [when(job.finished_at || job.started_at || job.scheduled_for)]),
      el("td", { "class": "num", text: duration(job) })
    ]);
  }

  function renderJobs(page, jobBase) {
    var tbody = document.querySelector("[data-jobs]");
    var rows = page.jobs.map(function (job) { return jobRow(job, jobBase); });
    tbody.replaceChildren.apply(tbody, rows);
    document.querySelector("[data-no-jobs]").hidden = rows.length > 0;
  }

  function jobsUrl(base, table) {
    var params = new URLSearchParams();
    ["queue", "state", "name", "limit", "children"].forEach(function (key) {
      var value = table.getAttribute("data-filter-" + key);
      if (value) params.set(key, key === "children" ? "true" : value);
    });
    return base + (String(params) ? "?" + params : "");
  }

  if (body.getAttribute("data-page") === "dashboard") {
    var queuesUrl = body.getAttribute("data-api-queues");
    var table = document.querySelector("[data-jobs-table]");
    var liveTable = body.getAttribute("data-live-table") === "yes";
    var listUrl = jobsUrl(body.getAttribute("data-api-jobs"), table);
    var jobBase = body.getAttribute("data-job-base");
    var busy = false;

    var poll = function () {
      if (busy || document.hidden) return;
      busy = true;
      var work = [getJSON(queuesUrl).then(renderQueues)];
      if (liveTable) work.push(getJSON(listUrl).then(function (page) { renderJobs(page, jobBase); }));
      Promise.all(work).then(
        function () { setStatus("Live: updated " + new Date().toLocaleTimeString(), false); },
        function (error) { setStatus("Not updating: " + error.message, true); }
      ).then(function () { busy = false; });
    };
    setInterval(poll, POLL_MS);
    document.addEventListener("visibilitychange", poll);

    table.addEventListener("click", function (event) {
      if (event.target.closest("a")) return;
      var row = event.target.closest("tr[data-href]");
      if (row) window.location.href = row.getAttribute("data-href");
    });
  }

  // ------------------------------------------------------------------ job detail

  if (body.getAttribute("data-page") === "job") {
    var jobUrl = body.getAttribute("data-api-job");
    var shownState = body.getAttribute("data-job-state");
    var shownUpdate = body.getAttribute("data-job-updated");
    var finished = ["complete", "failed", "revoked", "expired", "interrupted"];
    var progress = document.querySelector("[data-progress]");
    var progressText = document.querySelector("[data-progress-text]");

    var watch = function () {
      if (finished.indexOf(shownState) !== -1 || document.hidden) return;
      getJSON(jobUrl).then(function (job) {
        if (job.state !== shownState || (finished.indexOf(job.state) !== -1 && job.updated_at !== shownUpdate)) {
          window.location.reload(); // a new state: render the whole record again (attempts, result)
          return;
        }
        var p = job.progress;
        if (progress && p.total) {
          progress.max = p.total;
          progress.value = Math.min(p.done || 0, p.total);
          progressText.textContent = (p.done || 0) + " of " + p.total + (p.percent !== null ? " (" + p.percent + " %)" : "") + (p.message ? ": " + p.message : "");
        }
      }, function () { /* keep the page as it is; the next tick tries again */ });
    };
    setInterval(watch, JOB_POLL_MS);
  }
})();
