// The sharp design the bench compares pixfork with: Node's cluster with
// WORKERS processes sharing one port, each running sharp (libvips) with one
// libvips thread per image, so N workers use about N cores as pixfork's do.
// Routes mirror the bench's pixfork requests:
//   POST /v1/resize?width=W&quality=Q   (JPEG in: Lanczos3, JPEG out;
//                                         GIF in: every frame, GIF out)
//   POST /v1/blur?sigma=S&quality=Q     (JPEG out)
//   GET  /healthz
// Usage: node sharp_server.js PORT WORKERS
"use strict";
const cluster = require("node:cluster");
const http = require("node:http");

const port = Number(process.argv[2] || 8090);
const workers = Number(process.argv[3] || 2);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("exit", () => process.exit(1));
  process.on("SIGTERM", () => {
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    process.exit(0);
  });
} else {
  const sharp = require("sharp");
  sharp.concurrency(1);
  sharp.cache(false);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (url.pathname === "/healthz") {
      const ok = '{"status":"ok"}';
      res.writeHead(200, { "content-type": "application/json", "content-length": ok.length });
      res.end(ok);
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      try {
        const body = Buffer.concat(chunks);
        const q = Number(url.searchParams.get("quality") || 80);
        const gif = body.subarray(0, 3).toString() === "GIF";
        let out;
        let type = "image/jpeg";
        if (url.pathname === "/v1/resize" && gif) {
          const width = Number(url.searchParams.get("width"));
          out = await sharp(body, { animated: true })
            .resize({ width, kernel: "lanczos3", withoutEnlargement: true })
            .gif()
            .toBuffer();
          type = "image/gif";
        } else if (url.pathname === "/v1/resize") {
          const width = Number(url.searchParams.get("width"));
          out = await sharp(body)
            .resize({ width, kernel: "lanczos3", withoutEnlargement: true })
            .jpeg({ quality: q })
            .toBuffer();
        } else if (url.pathname === "/v1/blur") {
          const sigma = Number(url.searchParams.get("sigma"));
          out = await sharp(body).blur(sigma).jpeg({ quality: q }).toBuffer();
        } else {
          res.writeHead(404);
          res.end();
          return;
        }
        res.writeHead(200, { "content-type": type, "content-length": out.length });
        res.end(out);
      } catch (e) {
        res.writeHead(400, { "content-type": "text/plain" });
        res.end(String(e));
      }
    });
  });
  server.listen(port, "127.0.0.1");
}
