import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

/** The Java example: an executable JAR that answers JSON on $PORT with the JDK's own server. */
public class Hello {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getenv().getOrDefault("PORT", "8080"));
        String app = applicationName(System.getenv().getOrDefault("VCAP_APPLICATION", "{}"));
        String index = String.valueOf(Integer.parseInt(System.getenv().getOrDefault("CF_INSTANCE_INDEX", "0")));
        HttpServer server = HttpServer.create(new InetSocketAddress(port), 0);
        server.createContext("/", exchange -> {
            String path = exchange.getRequestURI().getPath();
            System.out.println(exchange.getRequestMethod() + " " + path);
            byte[] body = String.format(
                    "{\"app\":\"%s\",\"instance_index\":%s,\"language\":\"java\",\"java\":\"%s\",\"max_heap_mib\":%d,\"path\":\"%s\"}",
                    app, index, System.getProperty("java.version"),
                    Runtime.getRuntime().maxMemory() / (1024 * 1024), path.replace("\"", ""))
                .getBytes(StandardCharsets.UTF_8);
            exchange.getResponseHeaders().set("Content-Type", "application/json");
            exchange.sendResponseHeaders(200, body.length);
            try (OutputStream out = exchange.getResponseBody()) {
                out.write(body);
            }
        });
        server.start();
        System.out.println("listening on " + port);
    }

    /** The "application_name" of VCAP_APPLICATION, read without a JSON library. */
    static String applicationName(String vcap) {
        String key = "\"application_name\":\"";
        int at = vcap.indexOf(key);
        if (at < 0) {
            return "";
        }
        int from = at + key.length();
        int to = vcap.indexOf('"', from);
        return to < 0 ? "" : vcap.substring(from, to);
    }
}
