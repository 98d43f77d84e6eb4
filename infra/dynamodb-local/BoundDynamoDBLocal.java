// DynamoDB Local listening on chosen addresses only.
//
// DynamoDB Local has no host option: its Jetty server binds every interface, so a developer's
// local data would be reachable from the network they sit on. This launcher builds the server
// exactly as DynamoDB Local's own main does (same command-line arguments), then binds its connector
// to the first address in the system property `shelfwise.hosts` (comma-separated, default
// 127.0.0.1) and adds one connector per further address (e.g. docker0's, for Lambda containers).
//
//   java -Dshelfwise.hosts=127.0.0.1,172.17.0.1 -cp DynamoDBLocal.jar BoundDynamoDBLocal.java \
//        -port 8000 -sharedDb -dbPath ...
//
// Run as a single source file (Java 11+ compiles it in memory); infra/local/dynamodb_local.py
// falls back to the plain jar where the Java runtime has no compiler, and says so.
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class BoundDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        String[] hosts = System.getProperty("shelfwise.hosts", "127.0.0.1").split(",");
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field field = DynamoDBProxyServer.class.getDeclaredField("server");
        field.setAccessible(true);
        Server server = (Server) field.get(proxy);
        ServerConnector first = (ServerConnector) server.getConnectors()[0];
        first.setHost(hosts[0].trim());
        for (int i = 1; i < hosts.length; i++) {
            ServerConnector extra = new ServerConnector(server);
            extra.setHost(hosts[i].trim());
            extra.setPort(first.getPort());
            server.addConnector(extra);
        }
        proxy.start();
        System.out.println("DynamoDB Local listening on " + String.join(",", hosts) + " port " + first.getPort());
        proxy.join();
    }
}
