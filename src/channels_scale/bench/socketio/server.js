"use strict";
// One process of the `socketio` stack of `channels-scale bench`: Socket.IO with its Redis adapter,
// written the way its documentation shows, serving the same broadcast semantics as the other
// stacks' /ws/broadcast/<room>/ endpoint:
//
//   a client connects to /socket.io/?EIO=4&transport=websocket&room=<room> and is joined to <room>;
//   every "m" event it emits is emitted as "m" to every socket in <room>, the sender included, in
//   every process of the stack (the adapter publishes it on Redis; the others deliver it locally).
//
// Environment (set by channels_scale.bench.socketio):
//   CSB_LISTEN     the unix socket to listen on (nginx proxies to it, as to the Django workers)
//   CSB_REDIS_URL  the stack's private Redis, redis://:password@127.0.0.1:port/0
//   CSB_PING_INTERVAL_MS, CSB_PING_TIMEOUT_MS  Engine.IO's heartbeat (default 25000 and 60000)
//
// It prints "listening" once the adapter's Redis connections are up and the socket is bound.

const fs = require("node:fs");
const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const listen = process.env.CSB_LISTEN;
const redisUrl = process.env.CSB_REDIS_URL;
const pingInterval = Number(process.env.CSB_PING_INTERVAL_MS || 25000);
const pingTimeout = Number(process.env.CSB_PING_TIMEOUT_MS || 60000);

async function main() {
  if (!listen || !redisUrl) {
    console.error("CSB_LISTEN and CSB_REDIS_URL must be set");
    process.exit(2);
  }
  const pubClient = createClient({ url: redisUrl });
  const subClient = pubClient.duplicate();
  // Without a listener an outage would be an uncaught error: log it, node-redis reconnects.
  pubClient.on("error", (err) => console.error("redis (publish):", err.message));
  subClient.on("error", (err) => console.error("redis (subscribe):", err.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);

  // /healthz as the Django workers answer it, for a load balancer's health checks (HAProxy's).
  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      const body = JSON.stringify({ status: "ok", pid: process.pid });
      // A plain body, not chunked: the stack's health check reads it as is.
      res.writeHead(200, { "Content-Type": "application/json", "Content-Length": body.length });
      res.end(body);
    } else {
      res.writeHead(404).end();
    }
  });
  const io = new Server(httpServer, {
    // The bench speaks the websocket transport only, so a client's every request reaches the
    // process that holds its session and nginx needs no sticky sessions.
    transports: ["websocket"],
    serveClient: false,
    // By default Socket.IO's interval and a timeout longer than its 20 s, so a load generator
    // busy for a few seconds under saturation is not disconnected (the bench answers every ping).
    pingInterval,
    pingTimeout,
    maxHttpBufferSize: 65536,
  });
  io.adapter(createAdapter(pubClient, subClient));

  io.on("connection", (socket) => {
    const room = socket.handshake.query.room;
    if (typeof room !== "string" || room === "") {
      socket.disconnect(true);
      return;
    }
    socket.join(room);
    socket.on("m", (frame) => {
      io.to(room).emit("m", frame);
    });
  });

  fs.rmSync(listen, { force: true });
  httpServer.listen({ path: listen, backlog: 4096 }, () => {
    console.log(`listening on ${listen}`);
  });

  const stop = () => {
    io.close();
    Promise.allSettled([pubClient.quit(), subClient.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error("socketio server failed:", err);
  process.exit(1);
});
