// A minimal web app: answers every request with JSON naming the instance that answered.
const http = require("http");

const port = Number(process.env.PORT || 8080);
const app = JSON.parse(process.env.VCAP_APPLICATION || "{}");

http
  .createServer((req, res) => {
    const body = JSON.stringify({
      app: app.application_name,
      instance_index: Number(process.env.CF_INSTANCE_INDEX || 0),
      language: "node",
      path: req.url,
    });
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(body + "\n");
  })
  .listen(port, "0.0.0.0", () => console.log(`listening on port ${port}`));
