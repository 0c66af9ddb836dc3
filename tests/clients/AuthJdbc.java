// pgjdbc logs in with a password over SCRAM-SHA-256, and a wrong password is 28P01.
// Usage: java -cp postgresql.jar AuthJdbc.java PASSWORD [SSLMODE] HOST:PORT
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;

public class AuthJdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[args.length - 1] + "/postgres"
            + (args.length > 2 ? "?sslmode=" + args[1] : "");
        try (Connection c = DriverManager.getConnection(url, "postgres", args[0]);
             ResultSet r = c.createStatement().executeQuery("SELECT 7")) {
            if (!r.next() || r.getInt(1) != 7) {
                throw new AssertionError("query after login");
            }
        }
        try {
            DriverManager.getConnection(url, "postgres", args[0] + "x").close();
            throw new AssertionError("a wrong password logged in");
        } catch (SQLException e) {
            if (!"28P01".equals(e.getSQLState())) {
                throw new AssertionError("wrong password: " + e.getSQLState() + " " + e.getMessage());
            }
        }
        System.out.println("== OK");
    }
}
