// The chat room page: live messages over /ws/chat/<room>/, connection state, reconnect with backoff.
// Plain JS, no build step. A later client (channels_scale's client.js) adds jitter, heartbeats and
// resume-by-offset; this one reconnects and relies on the page's history for what it missed.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root) return;

  var room = root.dataset.room;
  var me = root.dataset.user;
  var maxChars = parseInt(root.dataset.maxChars, 10) || 2000;
  var list = document.getElementById("chat-messages");
  var stateEl = document.getElementById("chat-state");
  var errorEl = document.getElementById("chat-error");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var sendButton = document.getElementById("chat-send");

  // Close codes after which reconnecting cannot help (channels_scale.closecodes).
  var FINAL_CODES = { 4401: "Logged out: log in again.", 4403: "You may not join this room." };
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 15000;

  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var seen = new Set();

  Array.prototype.forEach.call(list.querySelectorAll("li[data-id]"), function (li) {
    seen.add(li.dataset.id);
  });

  function url() {
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + "/ws/chat/" + encodeURIComponent(room) + "/";
  }

  function setState(name, label) {
    stateEl.className = "state state-" + name;
    stateEl.textContent = label;
    var open = name === "open";
    input.disabled = !open;
    sendButton.disabled = !open;
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  function formatTime(iso) {
    var date = new Date(iso);
    if (isNaN(date.getTime())) return "";
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function append(message) {
    var id = String(message.id);
    if (seen.has(id)) return;
    seen.add(id);
    var empty = document.getElementById("chat-empty");
    if (empty) empty.remove();
    var stick = atBottom();
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

  function connect() {
    retryTimer = null;
    setState("connecting", attempt ? "reconnecting…" : "connecting…");
    socket = new WebSocket(url());

    socket.addEventListener("open", function () {
      attempt = 0;
      showError("");
      setState("open", "connected");
    });

    socket.addEventListener("message", function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame.type === "message") {
        append(frame);
      } else if (frame.type === "error") {
        showError(frame.detail || "The server refused that message.");
      }
    });

    socket.addEventListener("close", function (event) {
      socket = null;
      if (FINAL_CODES[event.code]) {
        setState("closed", "disconnected");
        showError(FINAL_CODES[event.code]);
        return;
      }
      // Exponential backoff with jitter, so a restarted worker is not hit by every client at once.
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
      delay = delay / 2 + Math.random() * (delay / 2);
      attempt += 1;
      setState("closed", "offline, retrying in " + Math.ceil(delay / 1000) + " s");
      retryTimer = window.setTimeout(connect, delay);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    if (text.length > maxChars) {
      showError("Messages are limited to " + maxChars + " characters.");
      return;
    }
    socket.send(JSON.stringify({ type: "message", text: text }));
    input.value = "";
    showError("");
    input.focus();
  });

  // Come back at once when the network or the tab returns, instead of waiting out the backoff.
  function retryNow() {
    if (retryTimer !== null) {
      window.clearTimeout(retryTimer);
      connect();
    }
  }
  window.addEventListener("online", retryNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") retryNow();
  });

  list.scrollTop = list.scrollHeight;
  connect();
})();
