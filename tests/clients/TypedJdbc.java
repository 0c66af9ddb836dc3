// Round trips of typed values with pgjdbc (PostgreSQL's JDBC driver), run as a single-file
// program: java -cp postgresql.jar tests/clients/TypedJdbc.java HOST:PORT
//
// pgjdbc turns a PreparedStatement into a server-side prepared statement on its fifth
// execution and from then on reads (and, for some types, sends) values in binary. So each
// statement here runs more than five times: values at the edges of their types are written and
// read back as the Java objects PostgreSQL gives, in text first and then in binary. Expects a
// fresh server (creates tables jdbc_rt and jdbc_rt_binary); prints "== OK" at the end; any failure throws. The test
// runs it against PostgreSQL 15 too.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.Objects;
import java.util.UUID;

public class TypedJdbc {
    static final int ROWS = 8;

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static LocalDate date(int i) {
        return i % 2 == 0 ? LocalDate.of(1, 1, 1).plusDays(i) : LocalDate.of(9999, 12, 31).minusDays(i);
    }

    static LocalDateTime ts(int i) {
        return LocalDateTime.of(2024, 2, 29, 10, 0, 0, 123456000).plusSeconds(i * 3601L);
    }

    static OffsetDateTime tz(int i) {
        return OffsetDateTime.of(1999, 12, 31, 23, 59, 59, 999999000, ZoneOffset.UTC).plusDays(i);
    }

    static UUID uuid(int i) {
        return i == 0 ? new UUID(0, 0) : new UUID(-1L, -1L - i);
    }

    static byte[] bytes(int i) {
        return i == 1 ? new byte[0] : new byte[] {0, 1, 127, (byte) 128, (byte) 255, (byte) i};
    }

    static String text(int i) {
        return i == 2 ? "" : "h\u00e9llo \u2603 \uD83D\uDE00 " + i;
    }

    static java.math.BigDecimal num(int i) {
        return new java.math.BigDecimal(i * 1000 + ".125").negate();
    }

    static long big(int i) {
        return i % 2 == 0 ? Long.MIN_VALUE + i : Long.MAX_VALUE - i;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + "/postgres?user=postgres";
        // As configured by default (text until the fifth execution), then with binary
        // transfer from the first execution on (prepareThreshold=-1).
        run(url, "jdbc_rt");
        run(url + "&prepareThreshold=-1", "jdbc_rt_binary");
        System.out.println("== OK");
    }

    /** DatabaseMetaData as tools read a schema: tables, columns, keys both ways, indexes. */
    static void metadata(Connection c, String prefix) throws Exception {
        String parent = prefix + "_parent", child = prefix + "_child";
        try (Statement st = c.createStatement()) {
            st.execute("CREATE TABLE " + parent + " (id serial PRIMARY KEY, name varchar(20) NOT NULL UNIQUE)");
            st.execute("CREATE TABLE " + child + " (id bigint PRIMARY KEY, parent_id int REFERENCES "
                    + parent + " (id), qty numeric(10,2), note text)");
            st.execute("CREATE INDEX " + child + "_note ON " + child + " (note)");
        }
        DatabaseMetaData md = c.getMetaData();
        java.util.List<String> tables = new java.util.ArrayList<>();
        try (ResultSet r = md.getTables(null, "public", prefix + "\\_%", new String[] {"TABLE"})) {
            while (r.next()) {
                String name = r.getString("TABLE_NAME");
                if (name.equals(child) || name.equals(parent)) tables.add(name + ":" + r.getString("TABLE_TYPE"));
            }
        }
        check(tables.equals(Arrays.asList(child + ":TABLE", parent + ":TABLE")), "getTables: " + tables);
        java.util.List<String> columns = new java.util.ArrayList<>();
        try (ResultSet r = md.getColumns(null, "public", child, null)) {
            while (r.next()) {
                columns.add(r.getString("COLUMN_NAME") + " " + r.getString("TYPE_NAME") + " " + r.getInt("DATA_TYPE")
                        + " " + r.getInt("COLUMN_SIZE") + "," + r.getInt("DECIMAL_DIGITS") + " " + r.getString("IS_NULLABLE"));
            }
        }
        check(columns.equals(Arrays.asList("id int8 -5 19,0 NO", "parent_id int4 4 10,0 YES",
                "qty numeric 2 10,2 YES", "note text 12 2147483647,0 YES")), "getColumns: " + columns);
        try (ResultSet r = md.getPrimaryKeys(null, "public", child)) {
            check(r.next() && r.getString("COLUMN_NAME").equals("id") && r.getInt("KEY_SEQ") == 1
                    && r.getString("PK_NAME").equals(child + "_pkey") && !r.next(), "getPrimaryKeys");
        }
        try (ResultSet r = md.getImportedKeys(null, "public", child)) {
            check(r.next(), "getImportedKeys has a row");
            String got = r.getString("PKTABLE_NAME") + "." + r.getString("PKCOLUMN_NAME") + " <- "
                    + r.getString("FKTABLE_NAME") + "." + r.getString("FKCOLUMN_NAME") + " "
                    + r.getString("FK_NAME") + " " + r.getString("PK_NAME");
            check(got.equals(parent + ".id <- " + child + ".parent_id " + child + "_parent_id_fkey " + parent + "_pkey"),
                    "getImportedKeys: " + got);
            check(!r.next(), "one imported key");
        }
        try (ResultSet r = md.getExportedKeys(null, "public", parent)) {
            check(r.next() && r.getString("FKTABLE_NAME").equals(child) && !r.next(), "getExportedKeys");
        }
        java.util.List<String> indexes = new java.util.ArrayList<>();
        try (ResultSet r = md.getIndexInfo(null, "public", child, false, false)) {
            while (r.next()) {
                indexes.add(r.getString("INDEX_NAME") + " " + r.getBoolean("NON_UNIQUE") + " "
                        + r.getString("COLUMN_NAME") + " " + r.getString("ASC_OR_DESC"));
            }
        }
        check(indexes.equals(Arrays.asList(child + "_pkey false id A", child + "_note true note A")),
                "getIndexInfo: " + indexes);
        System.out.println("== pgjdbc: DatabaseMetaData tables, columns, keys, indexes");
    }

    static void run(String url, String table) throws Exception {
        try (Connection c = DriverManager.getConnection(url)) {
            System.out.println("== pgjdbc: connected (" + table + ")");
            try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, d date, ts timestamp, "
                        + "tz timestamptz, u uuid, b bytea, t text, i8 bigint, f8 double precision, "
                        + "ok boolean, n numeric(10,3))");
            }
            try (PreparedStatement p = c.prepareStatement(
                    "INSERT INTO " + table + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                for (int i = 0; i < ROWS; i++) {
                    p.setInt(1, i);
                    p.setObject(2, date(i));
                    p.setObject(3, ts(i));
                    p.setObject(4, tz(i));
                    p.setObject(5, uuid(i));
                    p.setBytes(6, bytes(i));
                    p.setString(7, text(i));
                    p.setLong(8, big(i));
                    p.setDouble(9, i == 3 ? -2.25 : 0.5 * i);
                    p.setBoolean(10, i % 3 == 0);
                    p.setBigDecimal(11, num(i));
                    check(p.executeUpdate() == 1, "insert " + i);
                }
                p.setInt(1, ROWS);
                for (int k = 2; k <= 11; k++) {
                    p.setNull(k, java.sql.Types.NULL);
                }
                check(p.executeUpdate() == 1, "insert of NULLs");
            }
            System.out.println("== pgjdbc: inserted " + (ROWS + 1) + " rows with a prepared statement");
            try (PreparedStatement q = c.prepareStatement("SELECT * FROM " + table + " WHERE id = ?")) {
                for (int i = 0; i < ROWS; i++) {
                    q.setInt(1, i);
                    try (ResultSet r = q.executeQuery()) {
                        check(r.next(), "row " + i);
                        String at = " (row " + i + ")";
                        check(r.getObject("d", LocalDate.class).equals(date(i)), "date" + at + ": " + r.getObject("d", LocalDate.class));
                        check(r.getObject("ts", LocalDateTime.class).equals(ts(i)), "timestamp" + at + ": " + r.getObject("ts", LocalDateTime.class));
                        check(r.getObject("tz", OffsetDateTime.class).isEqual(tz(i)), "timestamptz" + at + ": " + r.getObject("tz", OffsetDateTime.class));
                        check(r.getObject("u").equals(uuid(i)), "uuid" + at + ": " + r.getObject("u"));
                        check(Arrays.equals(r.getBytes("b"), bytes(i)), "bytea" + at);
                        check(r.getString("t").equals(text(i)), "text" + at + ": " + r.getString("t"));
                        check(r.getLong("i8") == big(i), "bigint" + at + ": " + r.getLong("i8"));
                        check(r.getDouble("f8") == (i == 3 ? -2.25 : 0.5 * i), "double" + at);
                        check(r.getBoolean("ok") == (i % 3 == 0), "boolean" + at);
                        // BigDecimal.equals compares the scale too: -1000.125, not -1000.1250.
                        check(r.getBigDecimal("n").equals(num(i)), "numeric" + at + ": " + r.getBigDecimal("n"));
                        check(r.getObject("n") instanceof java.math.BigDecimal, "n is a BigDecimal" + at);
                        check(r.getObject("id") instanceof Integer, "id is an Integer" + at);
                        check(r.getObject("d") instanceof java.sql.Date, "d is a java.sql.Date" + at);
                        check(r.getObject("tz") instanceof java.sql.Timestamp, "tz is a java.sql.Timestamp" + at);
                    }
                }
                q.setInt(1, ROWS);
                try (ResultSet r = q.executeQuery()) {
                    check(r.next(), "row of NULLs");
                    for (String col : new String[] {"d", "ts", "tz", "u", "b", "t", "i8", "f8", "ok", "n"}) {
                        check(Objects.isNull(r.getObject(col)), col + " is NULL");
                    }
                }
            }
            System.out.println("== pgjdbc: read back " + ROWS + " rows, text then binary");
            try (PreparedStatement q = c.prepareStatement(
                    "SELECT count(*) FROM " + table + " WHERE tz < ? AND u <> ? AND i8 > ?")) {
                for (int i = 0; i < ROWS; i++) {
                    q.setObject(1, tz(4));
                    q.setObject(2, uuid(0));
                    q.setLong(3, 0);
                    try (ResultSet r = q.executeQuery()) {
                        check(r.next() && r.getLong(1) == 2, "count by typed parameters");
                    }
                }
            }
            System.out.println("== pgjdbc: found rows by typed parameters");
            // CopyManager: COPY FROM STDIN from a reader, COPY TO STDOUT into a writer.
            org.postgresql.copy.CopyManager copy = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE " + table + "_copy (id int PRIMARY KEY, name text, at date)");
            }
            long copied = copy.copyIn("COPY " + table + "_copy FROM STDIN WITH (FORMAT csv)",
                    new java.io.StringReader("1,\"a, b\",2024-02-29\n2,,\n3,\"\",1999-12-31\n"));
            check(copied == 3, "copyIn counts 3 rows, not " + copied);
            java.io.StringWriter out = new java.io.StringWriter();
            copied = copy.copyOut("COPY (SELECT * FROM " + table + "_copy ORDER BY id) TO STDOUT", out);
            check(copied == 3, "copyOut counts 3 rows, not " + copied);
            check(out.toString().equals("1\ta, b\t2024-02-29\n2\t\\N\t\\N\n3\t\t1999-12-31\n"),
                    "copyOut text: " + out);
            System.out.println("== pgjdbc: CopyManager in and out");
            // A batch of prepared inserts: Bind/Execute per row, one Sync.
            try (PreparedStatement b = c.prepareStatement(
                    "INSERT INTO " + table + "_copy (id, name, at) VALUES (?, ?, ?)")) {
                for (int i = 10; i < 60; i++) {
                    b.setInt(1, i);
                    b.setString(2, "batch " + i);
                    b.setObject(3, LocalDate.of(2024, 1, 1).plusDays(i));
                    b.addBatch();
                }
                int[] counts = b.executeBatch();
                check(counts.length == 50 && Arrays.stream(counts).allMatch(n -> n == 1),
                        "executeBatch counts: " + Arrays.toString(counts));
            }
            try (Statement st = c.createStatement();
                    ResultSet r = st.executeQuery("SELECT count(*), max(name), max(at) FROM " + table + "_copy WHERE id >= 10")) {
                check(r.next() && r.getLong(1) == 50 && r.getString(2).equals("batch 59")
                        && r.getObject(3, LocalDate.class).equals(LocalDate.of(2024, 2, 29)), "batch rows");
            }
            System.out.println("== pgjdbc: batch insert");
            arrays(c, table);
            floats(c, table);
            metadata(c, table);
        }
    }

    /** Arrays through createArrayOf and getArray, more than five times (so in binary too). */
    static void arrays(Connection c, String table) throws Exception {
        try (Statement s = c.createStatement()) {
            s.execute("CREATE TABLE " + table + "_arr (id int PRIMARY KEY, i int[], t text[], f float8[])");
        }
        try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + "_arr VALUES (?, ?, ?, ?)")) {
            for (int i = 0; i < ROWS; i++) {
                p.setInt(1, i);
                p.setArray(2, c.createArrayOf("int4", i == 1 ? new Integer[0]
                        : new Integer[] {i, null, Integer.MIN_VALUE, Integer.MAX_VALUE}));
                p.setArray(3, c.createArrayOf("text", new String[] {text(i), "b c", null, "NULL", "\"\\"}));
                p.setArray(4, i == 2 ? null : c.createArrayOf("float8", new Double[] {0.5 * i, -2.25}));
                check(p.executeUpdate() == 1, "insert of arrays " + i);
            }
        }
        try (PreparedStatement q = c.prepareStatement("SELECT i, t, f FROM " + table + "_arr WHERE id = ?")) {
            for (int i = 0; i < ROWS; i++) {
                q.setInt(1, i);
                try (ResultSet r = q.executeQuery()) {
                    check(r.next(), "row of arrays " + i);
                    Object[] ints = (Object[]) r.getArray("i").getArray();
                    Object[] want = i == 1 ? new Integer[0] : new Integer[] {i, null, Integer.MIN_VALUE, Integer.MAX_VALUE};
                    check(Arrays.equals(ints, want), "int[] (row " + i + "): " + Arrays.toString(ints));
                    check(ints instanceof Integer[], "int[] is an Integer[] (row " + i + ")");
                    Object[] texts = (Object[]) r.getArray("t").getArray();
                    check(Arrays.equals(texts, new String[] {text(i), "b c", null, "NULL", "\"\\"}),
                            "text[] (row " + i + "): " + Arrays.toString(texts));
                    java.sql.Array f = r.getArray("f");
                    check(i == 2 ? f == null : Arrays.equals((Object[]) f.getArray(), new Double[] {0.5 * i, -2.25}),
                            "float8[] (row " + i + ")");
                }
            }
        }
        System.out.println("== pgjdbc: arrays written and read back, text then binary");
    }

    /** The special floats, written and found by a PreparedStatement run more than five times. */
    static void floats(Connection c, String table) throws Exception {
        double[] f8 = {Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, Double.NaN, Double.MIN_VALUE,
            Double.MAX_VALUE, -0.5, 0.1, 1e-300};
        float[] f4 = {Float.NEGATIVE_INFINITY, Float.NaN, Float.MAX_VALUE, Float.MIN_VALUE,
            Float.POSITIVE_INFINITY, 0.1f, -2.5f, 1e30f};
        try (Statement s = c.createStatement()) {
            s.execute("CREATE TABLE " + table + "_float (id int PRIMARY KEY, f float8, r real)");
        }
        try (PreparedStatement p = c.prepareStatement("INSERT INTO " + table + "_float VALUES (?, ?, ?)")) {
            for (int i = 0; i < f8.length; i++) {
                p.setInt(1, i);
                p.setDouble(2, f8[i]);
                p.setFloat(3, f4[i]);
                check(p.executeUpdate() == 1, "insert of floats " + i);
            }
        }
        try (PreparedStatement q = c.prepareStatement("SELECT id, f, r FROM " + table + "_float WHERE f = ?")) {
            for (int i = 0; i < f8.length; i++) {
                q.setDouble(1, f8[i]);
                try (ResultSet r = q.executeQuery()) {
                    check(r.next(), "float row found by its value " + f8[i]);
                    check(r.getInt(1) == i, "float row " + i);
                    check(Double.compare(r.getDouble(2), f8[i]) == 0, "float8 " + f8[i] + ": " + r.getDouble(2));
                    check(Float.compare(r.getFloat(3), f4[i]) == 0, "real " + f4[i] + ": " + r.getFloat(3));
                    check(!r.next(), "one float row for " + f8[i]);
                }
            }
        }
        System.out.println("== pgjdbc: float specials written, found and read back, text then binary");
    }
}
