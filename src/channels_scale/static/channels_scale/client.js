/*
 * channels-scale browser client — no build step, no dependency.
 *
 *   const sub = ChannelsScale.subscribe("/ws/chat/lobby/", {
 *     position: {epoch: "…", offset: 41},   // where the page's state stands (optional)
 *     onMessage(frame) {},                   // every frame with an offset, exactly once, in order
 *     onFrame(frame) {},                     // every other frame (errors, app-specific types)
 *     onPresence(event) {},                  // {type: "presence", event: "join"|"leave", user}
 *     onPresenceState(users) {},             // the full list, on every (re)connect
 *     onReload(position, reason) {},         // history cannot cover the gap: reload state, then
 *                                            // the client continues from `position`
 *     onState(state, detail) {},             // "connecting" | "open" | "reconnecting" | "closed"
 *   });
 *   sub.send({type: "message", text: "hi"}); // false when not connected (nothing is queued)
 *   sub.position;                            // {epoch, offset} of the last message delivered
 *   sub.close();
 *
 * Guarantees, with a server built on channels_scale.history (see docs/recovery.md):
 * - reconnects by itself after any drop: exponential backoff with full jitter
 *   (delay = random(0, min(cap, base * 2^attempt))), reset once a connection has stayed up;
 *   at once when the browser comes back online or the tab becomes visible again;
 * - resumes from (epoch, offset): the server sends what was missed, then live messages, so
 *   onMessage sees every offset once, in order; frames with an offset already delivered are
 *   dropped here too (belt and braces);
 * - when the server cannot cover the gap (its epoch changed or the history was trimmed), onReload
 *   fires and the application reloads its state from the source of truth (e.g. over HTTP);
 * - heartbeats: a {"type": "ping"} every `heartbeatInterval` ms; no pong within
 *   `heartbeatTimeout` ms closes the socket and reconnects (half-open TCP, sleeping laptops);
 * - close codes 4401 (log in) and 4403 (forbidden) stop reconnecting: retrying cannot help.
 */
(function (global) {
  "use strict";

  const FINAL_CLOSE_CODES = new Set([4401, 4403]);

  function backoffDelay(attempt, base, cap, random) {
    const ceiling = Math.min(cap, base * Math.pow(2, attempt));
    return Math.floor((random || Math.random)() * ceiling);
  }

  function wsUrl(path, params) {
    const loc = global.location;
    let url = path;
    if (!/^wss?:\/\//.test(path)) {
      url = (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + path;
    }
    const query = Object.keys(params)
      .filter((k) => params[k] !== null && params[k] !== undefined && params[k] !== "")
      .map((k) => encodeURIComponent(k) + "=" + encodeURIComponent(params[k]))
      .join("&");
    return query ? url + (url.indexOf("?") >= 0 ? "&" : "?") + query : url;
  }

  function subscribe(path, options) {
    const opts = Object.assign(
      {
        position: null,
        backoffBase: 500,
        backoffCap: 15000,
        stableAfter: 5000,
        heartbeatInterval: 20000,
        heartbeatTimeout: 10000,
        onMessage() {},
        onFrame() {},
        onPresence() {},
        onPresenceState() {},
        onReload() {},
        onState() {},
      },
      options || {}
    );
    const self = {
      position: opts.position ? {epoch: opts.position.epoch, offset: opts.position.offset} : null,
      conn: null,
      attempts: 0,
      socket: null,
      closed: false,
    };
    let pingTimer = null;
    let pongTimer = null;
    let retryTimer = null;
    let stableTimer = null;

    function setState(state, detail) {
      try {
        opts.onState(state, detail);
      } catch (err) {
        console.error(err);
      }
    }

    function clearTimers() {
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      clearTimeout(stableTimer);
      pingTimer = pongTimer = stableTimer = null;
    }

    function deliver(frame) {
      if (typeof frame.offset === "number" && frame.epoch !== undefined) {
        const pos = self.position;
        if (pos && pos.epoch === frame.epoch && frame.offset <= pos.offset) {
          return; // already delivered
        }
        self.position = {epoch: frame.epoch, offset: frame.offset};
        opts.onMessage(frame);
        return;
      }
      switch (frame.type) {
        case "pong":
          clearTimeout(pongTimer);
          pongTimer = null;
          return;
        case "welcome":
          self.conn = frame.conn;
          if (!self.position && frame.epoch !== undefined) {
            self.position = {epoch: frame.epoch, offset: frame.offset};
          }
          return;
        case "reload":
          self.position = {epoch: frame.epoch, offset: frame.offset};
          opts.onReload(self.position, frame.reason);
          return;
        case "presence":
          opts.onPresence(frame);
          return;
        case "presence.state":
          opts.onPresenceState(frame.users);
          return;
        default:
          opts.onFrame(frame);
      }
    }

    function open() {
      if (self.closed) return;
      setState(self.attempts === 0 ? "connecting" : "reconnecting", {attempt: self.attempts});
      const params = {};
      if (self.position) {
        params.epoch = self.position.epoch;
        params.offset = self.position.offset;
      }
      if (self.conn) params.prev = self.conn;
      const socket = new WebSocket(wsUrl(path, params));
      self.socket = socket;
      socket.onopen = function () {
        setState("open");
        stableTimer = setTimeout(function () {
          self.attempts = 0;
        }, opts.stableAfter);
        pingTimer = setInterval(function () {
          if (socket.readyState !== WebSocket.OPEN) return;
          socket.send(JSON.stringify({type: "ping"}));
          if (!pongTimer) {
            pongTimer = setTimeout(function () {
              socket.close(4000, "heartbeat timeout");
            }, opts.heartbeatTimeout);
          }
        }, opts.heartbeatInterval);
      };
      socket.onmessage = function (event) {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (err) {
          console.error("channels-scale: not JSON", event.data);
          return;
        }
        try {
          deliver(frame);
        } catch (err) {
          console.error(err);
        }
      };
      socket.onclose = function (event) {
        clearTimers();
        if (self.socket !== socket) return;
        self.socket = null;
        if (self.closed) {
          setState("closed", {code: event.code});
          return;
        }
        if (FINAL_CLOSE_CODES.has(event.code)) {
          self.closed = true;
          setState("closed", {code: event.code, final: true});
          return;
        }
        const delay = backoffDelay(self.attempts, opts.backoffBase, opts.backoffCap);
        self.attempts += 1;
        setState("reconnecting", {code: event.code, delay: delay, attempt: self.attempts});
        retryTimer = setTimeout(open, delay);
      };
    }

    function reconnectNow() {
      // Back online or visible again: don't wait for the backoff timer.
      if (!self.closed && !self.socket) {
        clearTimeout(retryTimer);
        open();
      }
    }

    function onVisible() {
      if (global.document && global.document.visibilityState === "visible") reconnectNow();
    }

    self.send = function (obj) {
      const socket = self.socket;
      if (!socket || socket.readyState !== WebSocket.OPEN) return false;
      socket.send(typeof obj === "string" ? obj : JSON.stringify(obj));
      return true;
    };
    self.close = function () {
      self.closed = true;
      clearTimeout(retryTimer);
      clearTimers();
      if (self.socket) self.socket.close(1000);
      global.removeEventListener("online", reconnectNow);
      if (global.document) global.document.removeEventListener("visibilitychange", onVisible);
    };
    global.addEventListener("online", reconnectNow);
    if (global.document) global.document.addEventListener("visibilitychange", onVisible);
    open();
    return self;
  }

  global.ChannelsScale = {subscribe: subscribe, backoffDelay: backoffDelay, wsUrl: wsUrl};
})(typeof window !== "undefined" ? window : globalThis);
