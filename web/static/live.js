// Progressive enhancement for running test runs: poll the run's JSON and update the page.
// Pages read fine without this; it only saves a reload. Builds DOM nodes with textContent only.
(function () {
  "use strict";
  var FINAL = ["passed", "failed", "interrupted", "error"];
  var INTERVAL = 1500;

  function getJSON(url) {
    return fetch(url, {headers: {"Accept": "application/json"}, cache: "no-store", credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (doc) { return doc.result; });
  }

  function setStatus(el, status) {
    if (!el) { return; }
    el.textContent = status;
    el.className = el.className.replace(/\b(running|passed|failed|interrupted|error|unknown)\b/g, "").trim() + " " + status;
  }

  function countsText(counts) {
    var order = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"];
    var parts = [];
    order.forEach(function (k) { if (counts && counts[k]) { parts.push(counts[k] + " " + k); } });
    return parts.join(", ") || "no tests yet";
  }

  function cell(text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    if (text !== null && text !== undefined) { td.textContent = text; }
    return td;
  }

  function eventRow(ev) {
    var tr = document.createElement("tr");
    tr.className = "ev-" + ev.outcome;
    var name = cell(null, "nodeid");
    var code = document.createElement("code");
    code.textContent = ev.nodeid;
    name.appendChild(code);
    if (ev.longrepr) {
      var det = document.createElement("details");
      det.className = "command failure-box";
      det.open = ev.outcome === "failed" || ev.outcome === "error";
      var sum = document.createElement("summary");
      sum.textContent = "failure";
      var pre = document.createElement("pre");
      pre.className = "output failure";
      pre.textContent = ev.longrepr;
      det.appendChild(sum);
      det.appendChild(pre);
      name.appendChild(det);
    }
    tr.appendChild(name);
    tr.appendChild(cell(ev.env));
    var oc = cell(null);
    var span = document.createElement("span");
    span.className = "outcome " + ev.outcome;
    span.textContent = ev.outcome;
    oc.appendChild(span);
    tr.appendChild(oc);
    tr.appendChild(cell(typeof ev.duration === "number" ? ev.duration.toFixed(2) + " s" : "", "num nowrap"));
    return tr;
  }

  function runPage(box) {
    var since = parseInt(box.getAttribute("data-since") || "0", 10);
    var url = box.getAttribute("data-run-json");
    var tbody = document.getElementById("events");
    function poll() {
      getJSON(url + "?since=" + since).then(function (run) {
        (run.events || []).forEach(function (ev) {
          tbody.appendChild(eventRow(ev));
          since = Math.max(since, ev.seq + 1);
        });
        var none = document.getElementById("no-events");
        if (none && tbody.children.length) { none.remove(); }
        document.getElementById("event-count").textContent = tbody.children.length;
        document.getElementById("run-counts").textContent = countsText(run.counts);
        setStatus(document.getElementById("run-status"), run.status);
        box.setAttribute("data-status", run.status);
        if (run.exitcode !== null && run.exitcode !== undefined) {
          document.getElementById("run-exitcode").textContent = run.exitcode;
        }
        if (FINAL.indexOf(run.status) >= 0) {
          if (run.finished) { document.getElementById("run-finished").textContent = new Date(run.finished * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC"; }
          var note = document.querySelector(".live-note");
          if (note) { note.remove(); }
          return;
        }
        setTimeout(poll, INTERVAL);
      }).catch(function () { setTimeout(poll, INTERVAL * 4); });
    }
    setTimeout(poll, INTERVAL);
  }

  function runRows(rows) {
    rows.forEach(function (row) {
      var url = row.getAttribute("data-live-run");
      function poll() {
        getJSON(url + "?since=1000000000").then(function (run) {
          setStatus(row.querySelector("[data-field=status]"), run.status);
          row.querySelector("[data-field=counts]").textContent = countsText(run.counts);
          if (FINAL.indexOf(run.status) < 0) { setTimeout(poll, INTERVAL * 2); }
        }).catch(function () { setTimeout(poll, INTERVAL * 8); });
      }
      setTimeout(poll, INTERVAL);
    });
  }

  var box = document.querySelector("[data-run-json]");
  if (box && FINAL.indexOf(box.getAttribute("data-status")) < 0) { runPage(box); }
  var rows = Array.prototype.slice.call(document.querySelectorAll("[data-live-run]"));
  if (rows.length) { runRows(rows); }
})();
