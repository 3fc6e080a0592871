// The chat room page, on channels_scale's client.js: live messages over /ws/chat/<room>/,
// resume by (epoch, offset) after any drop, reload from the server when history cannot cover the
// gap, who is online. Plain JS, no build step.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root || !window.ChannelsScale) return;

  var room = root.dataset.room;
  var me = root.dataset.user;
  var maxChars = parseInt(root.dataset.maxChars, 10) || 2000;
  var list = document.getElementById("chat-messages");
  var stateEl = document.getElementById("chat-state");
  var errorEl = document.getElementById("chat-error");
  var onlineEl = document.getElementById("chat-online");
  var eventsEl = document.getElementById("chat-events");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var sendButton = document.getElementById("chat-send");
  var FINAL_CODES = { 4401: "Logged out: log in again.", 4403: "You may not join this room." };

  var seen = new Set();
  var online = new Map();
  Array.prototype.forEach.call(list.querySelectorAll("li[data-id]"), function (li) {
    seen.add(li.dataset.id);
  });

  function setState(name, label) {
    stateEl.className = "state state-" + name;
    stateEl.textContent = label;
    input.disabled = sendButton.disabled = name !== "open";
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function append(message) {
    var id = String(message.id);
    if (seen.has(id)) return; // the page may already show it (position read before the query)
    seen.add(id);
    var empty = document.getElementById("chat-empty");
    if (empty) empty.remove();
    var stick = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    var li = document.createElement("li");
    li.dataset.id = id;
    if (message.user === me) li.className = "mine";
    var user = document.createElement("span");
    user.className = "user";
    user.textContent = message.user;
    var time = document.createElement("time");
    time.dateTime = message.created;
    time.textContent = formatTime(message.created);
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = message.text;
    li.append(user, time, text);
    list.appendChild(li);
    if (stick || message.user === me) list.scrollTop = list.scrollHeight;
  }

  function renderOnline() {
    onlineEl.textContent = "";
    Array.from(online.values())
      .sort(function (a, b) { return String(a.name).localeCompare(String(b.name)); })
      .forEach(function (user) {
        var span = document.createElement("span");
        span.className = "who-online";
        span.dataset.user = user.name;
        span.textContent = user.name;
        onlineEl.appendChild(span);
      });
  }

  function logEvent(text) {
    var li = document.createElement("li");
    li.textContent = formatTime(new Date().toISOString()) + " " + text;
    eventsEl.appendChild(li);
    eventsEl.scrollTop = eventsEl.scrollHeight;
  }

  function reload() {
    // The room's history no longer covers our gap: take the state from the database.
    return fetch(root.dataset.messagesUrl, { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (state) {
        state.messages.forEach(append);
        logEvent("reloaded the room");
      })
      .catch(function () { showError("Could not reload the room; refresh the page."); });
  }

  var position = root.dataset.epoch
    ? { epoch: root.dataset.epoch, offset: parseInt(root.dataset.offset, 10) }
    : null;

  var sub = window.ChannelsScale.subscribe("/ws/chat/" + encodeURIComponent(room) + "/", {
    position: position,
    onMessage: function (frame) {
      if (frame.data && frame.data.type === "message") append(frame.data);
    },
    onFrame: function (frame) {
      if (frame.type === "error") showError(frame.detail || "The server refused that message.");
    },
    onReload: reload,
    onPresenceState: function (users) {
      online.clear();
      users.forEach(function (user) { online.set(String(user.id), user); });
      renderOnline();
    },
    onPresence: function (event) {
      var user = event.user;
      if (event.event === "join") online.set(String(user.id), user);
      else online.delete(String(user.id));
      renderOnline();
      logEvent(user.name + (event.event === "join" ? " joined" : " left"));
    },
    onState: function (state, detail) {
      if (state === "open") {
        showError("");
        setState("open", "connected");
      } else if (state === "closed" && detail && FINAL_CODES[detail.code]) {
        setState("closed", "disconnected");
        showError(FINAL_CODES[detail.code]);
      } else if (state === "reconnecting" && detail && detail.delay !== undefined) {
        setState("connecting", "offline, retrying in " + Math.ceil(detail.delay / 1000) + " s");
      } else {
        setState("connecting", state === "connecting" ? "connecting…" : "reconnecting…");
      }
    },
  });
  window.chatSubscription = sub; // for the browser tests and the curious

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    if (text.length > maxChars) {
      showError("Messages are limited to " + maxChars + " characters.");
      return;
    }
    if (sub.send({ type: "message", text: text })) {
      input.value = "";
      showError("");
      input.focus();
    }
  });
})();
