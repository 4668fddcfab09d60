// Creates (idempotently) an HBase table pre-split at salt-bucket boundaries, or describes it.
//
// Run with the JDK 17+ single-file source launcher, against the same jars and conf/ as the
// server (conf/ holds hbase-site.xml and log4j2.properties). Add
// --add-opens java.base/java.nio=ALL-UNNAMED (or the server's full JDK 17 flag set), otherwise
// HBase logs an InaccessibleObjectException stack trace for java.nio.Bits.unaligned() on
// stderr (harmless: it falls back to non-Unsafe byte access).
//
//   java --add-opens java.base/java.nio=ALL-UNNAMED -cp "conf:lib/*" CreateSaltedTable.java --table clicks \
//        --families click_data,geo_data,user_agent_data --salt-buckets 16 \
//        --compression NONE --ttl-seconds 0 --zookeeper 127.0.0.1:2181
//   java -cp "conf:lib/*" CreateSaltedTable.java --table clicks --describe --zookeeper 127.0.0.1:2181
//
// Row keys start with one salt byte (user_hash mod buckets), so the table is split at the single
// bytes 0x01 .. (buckets-1): region i holds exactly the rows of bucket i, and a scan of bucket s
// is [bytes([s]), bytes([s+1])). Thrift1 createTable cannot pre-split, hence this program.
//
// Every family: max versions 1, bloom filter ROW, block cache on, compression and TTL as given.
//
// Output: exactly one JSON line on stdout; HBase's own logging is sent to stderr.
//   absent table            -> creates it: {"created": true, "table": ..., "regions": 16, ...}, exit 0
//   present, same families  -> {"created": false, ...} (settings that differ are listed under
//                              "settings_differ"; nothing is ever altered), exit 0
//   present, other families -> message on stderr naming expected and actual families, exit 3
//   --describe              -> {"exists": true, "families": [...], "regions": N, "start_keys": [...]}
//                              or {"exists": false}, exit 0
// Exit codes: 0 ok, 2 bad arguments, 3 family mismatch, 4 HBase unreachable / timed out,
//             5 HBase refused the request (e.g. a compression codec the server cannot load), 1 other.

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hbase.DoNotRetryIOException;
import org.apache.hadoop.hbase.HBaseConfiguration;
import org.apache.hadoop.hbase.HConstants;
import org.apache.hadoop.hbase.TableExistsException;
import org.apache.hadoop.hbase.TableName;
import org.apache.hadoop.hbase.client.Admin;
import org.apache.hadoop.hbase.client.ColumnFamilyDescriptor;
import org.apache.hadoop.hbase.client.ColumnFamilyDescriptorBuilder;
import org.apache.hadoop.hbase.client.Connection;
import org.apache.hadoop.hbase.client.ConnectionFactory;
import org.apache.hadoop.hbase.client.RegionInfo;
import org.apache.hadoop.hbase.client.TableDescriptor;
import org.apache.hadoop.hbase.client.TableDescriptorBuilder;
import org.apache.hadoop.hbase.io.compress.Compression;
import org.apache.hadoop.hbase.regionserver.BloomType;
import org.apache.hadoop.hbase.util.Bytes;

public class CreateSaltedTable {

  static final int EXIT_OK = 0, EXIT_OTHER = 1, EXIT_USAGE = 2, EXIT_MISMATCH = 3,
      EXIT_UNREACHABLE = 4, EXIT_REFUSED = 5;

  static final String USAGE =
      "usage: java -cp \"conf:lib/*\" CreateSaltedTable.java --table NAME\n"
    + "         [--families f1,f2,...] [--salt-buckets N (1..256, default 16)]\n"
    + "         [--compression NONE|SNAPPY|GZ|LZ4|ZSTD (default NONE)]\n"
    + "         [--ttl-seconds N (0 = forever, default 0)]\n"
    + "         [--zookeeper host:port (default 127.0.0.1:2181)]\n"
    + "         [--timeout-seconds N (default 30)] [--describe]";

  /** The real stdout: only the JSON result goes here. */
  static PrintStream out;

  static final class Args {
    String table;
    List<String> families = new ArrayList<>();
    int saltBuckets = 16;
    String compression = "NONE";
    long ttlSeconds = 0;
    String zkHost = "127.0.0.1";
    int zkPort = 2181;
    int timeoutSeconds = 30;
    boolean describe;
  }

  static final class Failure extends Exception {
    final int code;
    Failure(int code, String msg) { super(msg); this.code = code; }
  }

  public static void main(String[] argv) {
    // Log4j's console appender (conf/log4j2.properties) writes to System.out as it is when
    // logging initialises; point System.out at stderr first so stdout carries only our JSON.
    out = System.out;
    System.setOut(System.err);
    // HBase 2.6 warns on every connection that the ZooKeeper registry is deprecated (HBase 3
    // bootstraps from the master's RPC port); --zookeeper is the interface we chose, so hush it.
    // One logger context for all class loaders: the source launcher compiles this file into its
    // own class loader, and log4j's default selector would give it a context of its own, so a
    // level set from here would not reach the HBase classes.
    System.setProperty("log4j2.contextSelector",
        "org.apache.logging.log4j.core.selector.BasicContextSelector");
    org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.hadoop.hbase.client.ZKConnectionRegistry",
        org.apache.logging.log4j.Level.ERROR);
    // The ZooKeeper client logs a WARN with a stack trace on every reconnect attempt; our own
    // error message says what went wrong.
    org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.zookeeper", org.apache.logging.log4j.Level.ERROR);

    Args a;
    try {
      a = parse(argv);
    } catch (Failure f) {
      System.err.println("CreateSaltedTable: " + f.getMessage());
      System.err.println(USAGE);
      System.exit(f.code);
      return;
    }

    // Run the HBase work under a hard deadline: whatever the client's own retry logic does, the
    // program reports "unreachable" and exits within --timeout-seconds.
    ExecutorService ex = Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "create-salted-table");
      t.setDaemon(true);
      return t;
    });
    Future<String> fut = ex.submit(() -> run(a));
    int code;
    try {
      out.println(fut.get(a.timeoutSeconds, TimeUnit.SECONDS));
      code = EXIT_OK;
    } catch (TimeoutException e) {
      System.err.println("CreateSaltedTable: HBase (ZooKeeper " + a.zkHost + ":" + a.zkPort
          + ") did not answer within " + a.timeoutSeconds + " s; is it running?");
      code = EXIT_UNREACHABLE;
    } catch (ExecutionException e) {
      Throwable c = e.getCause();
      if (c instanceof Failure) {
        System.err.println("CreateSaltedTable: " + c.getMessage());
        code = ((Failure) c).code;
      } else {
        System.err.println("CreateSaltedTable: unexpected error: " + c);
        c.printStackTrace(System.err);
        code = EXIT_OTHER;
      }
    } catch (InterruptedException e) {
      code = EXIT_OTHER;
    }
    out.flush();
    System.err.flush();
    // Halt rather than exit: a half-open HBase connection can block shutdown hooks.
    Runtime.getRuntime().halt(code);
  }

  static Args parse(String[] argv) throws Failure {
    Args a = new Args();
    for (int i = 0; i < argv.length; i++) {
      String k = argv[i];
      if (k.equals("--describe")) { a.describe = true; continue; }
      if (k.equals("-h") || k.equals("--help")) {
        System.err.println(USAGE);
        Runtime.getRuntime().halt(EXIT_OK);
      }
      String v;
      int eq = k.indexOf('=');
      if (k.startsWith("--") && eq > 0) {
        v = k.substring(eq + 1);
        k = k.substring(0, eq);
      } else {
        if (i + 1 >= argv.length) throw new Failure(EXIT_USAGE, "missing value for " + k);
        v = argv[++i];
      }
      try {
        switch (k) {
          case "--table": a.table = v; break;
          case "--families":
            for (String f : v.split(",")) {
              f = f.trim();
              if (f.isEmpty()) continue;
              if (a.families.contains(f)) throw new Failure(EXIT_USAGE, "duplicate family " + f);
              a.families.add(f);
            }
            break;
          case "--salt-buckets": a.saltBuckets = Integer.parseInt(v); break;
          case "--compression": a.compression = v.trim().toUpperCase(); break;
          case "--ttl-seconds": a.ttlSeconds = Long.parseLong(v); break;
          case "--timeout-seconds": a.timeoutSeconds = Integer.parseInt(v); break;
          case "--zookeeper": {
            int c = v.lastIndexOf(':');
            if (c > 0) {
              a.zkHost = v.substring(0, c);
              a.zkPort = Integer.parseInt(v.substring(c + 1));
            } else {
              a.zkHost = v;
            }
            break;
          }
          default: throw new Failure(EXIT_USAGE, "unknown argument " + k);
        }
      } catch (NumberFormatException e) {
        throw new Failure(EXIT_USAGE, "not a number for " + k + ": " + v);
      }
    }
    if (a.table == null || a.table.isEmpty()) throw new Failure(EXIT_USAGE, "--table is required");
    try {
      TableName.valueOf(a.table);
    } catch (IllegalArgumentException e) {
      throw new Failure(EXIT_USAGE, "bad table name " + a.table + ": " + e.getMessage());
    }
    if (!a.describe) {
      if (a.families.isEmpty()) throw new Failure(EXIT_USAGE, "--families is required");
      for (String f : a.families) {
        if (!f.matches("[A-Za-z0-9_][A-Za-z0-9_.-]*")) {
          throw new Failure(EXIT_USAGE, "bad family name " + f);
        }
      }
      if (a.saltBuckets < 1 || a.saltBuckets > 256) {
        throw new Failure(EXIT_USAGE, "--salt-buckets must be 1..256 (one salt byte)");
      }
      if (!Set.of("NONE", "SNAPPY", "GZ", "LZ4", "ZSTD").contains(a.compression)) {
        throw new Failure(EXIT_USAGE, "--compression must be NONE, SNAPPY, GZ, LZ4 or ZSTD");
      }
      if (a.ttlSeconds < 0 || a.ttlSeconds >= HConstants.FOREVER) {
        throw new Failure(EXIT_USAGE, "--ttl-seconds must be 0 (forever) .. "
            + (HConstants.FOREVER - 1));
      }
    }
    if (a.timeoutSeconds < 1) throw new Failure(EXIT_USAGE, "--timeout-seconds must be >= 1");
    return a;
  }

  static Configuration clientConf(Args a) {
    Configuration c = HBaseConfiguration.create();
    c.set(HConstants.ZOOKEEPER_QUORUM, a.zkHost);
    c.setInt(HConstants.ZOOKEEPER_CLIENT_PORT, a.zkPort);
    // Fail fast when nothing is there (defaults retry for minutes).
    c.setInt("hbase.client.retries.number", 2);
    c.setLong("hbase.client.pause", 300);
    c.setInt("zookeeper.recovery.retry", 2);
    c.setInt("zookeeper.recovery.retry.intervalmill", 300);
    c.setInt("zookeeper.session.timeout", 10_000);
    c.setInt("hbase.rpc.timeout", 10_000);
    c.setInt("hbase.client.operation.timeout", 20_000);
    c.setInt("hbase.client.meta.operation.timeout", 20_000);
    // createTable waits for the procedure; bound that wait by the overall deadline.
    c.setInt("hbase.client.sync.wait.timeout.msec", a.timeoutSeconds * 1000);
    return c;
  }

  static String run(Args a) throws Exception {
    TableName tn = TableName.valueOf(a.table);
    // Cheap pre-check: nothing listening on the ZooKeeper port (HBase not started) fails at once
    // instead of after the client's retries.
    try (java.net.Socket probe = new java.net.Socket()) {
      probe.connect(new java.net.InetSocketAddress(a.zkHost, a.zkPort), 3000);
    } catch (java.io.IOException e) {
      throw new Failure(EXIT_UNREACHABLE, "HBase unreachable: cannot connect to ZooKeeper at "
          + a.zkHost + ":" + a.zkPort + " (" + e.getMessage() + "); is HBase running?");
    }
    Connection conn;
    try {
      conn = ConnectionFactory.createConnection(clientConf(a));
    } catch (Exception e) {
      throw new Failure(EXIT_UNREACHABLE, "cannot connect to HBase via ZooKeeper " + a.zkHost
          + ":" + a.zkPort + ": " + e);
    }
    try (Admin admin = conn.getAdmin()) {
      boolean exists;
      try {
        exists = admin.tableExists(tn);
      } catch (Exception e) {
        throw new Failure(EXIT_UNREACHABLE, "HBase unreachable (ZooKeeper " + a.zkHost + ":"
            + a.zkPort + " answers, but the cluster does not): " + firstLine(e.toString()));
      }
      if (a.describe) {
        return exists ? describeJson(admin, tn, null) : "{\"exists\": false}";
      }
      if (!exists) {
        try {
          admin.createTable(buildDescriptor(a, tn), splitKeys(a.saltBuckets));
          return describeJson(admin, tn, Map.of("created", "true"));
        } catch (TableExistsException e) {
          // Created concurrently by someone else: fall through to the existing-table check.
        } catch (DoNotRetryIOException e) {
          throw new Failure(EXIT_REFUSED, "HBase refused to create " + tn + ": "
              + firstLine(e.getMessage()));
        }
      }
      TableDescriptor td = admin.getDescriptor(tn);
      Set<String> actual = new TreeSet<>();
      for (ColumnFamilyDescriptor cf : td.getColumnFamilies()) actual.add(cf.getNameAsString());
      Set<String> expected = new TreeSet<>(a.families);
      if (!actual.equals(expected)) {
        throw new Failure(EXIT_MISMATCH, "table " + tn + " already exists with families "
            + actual + " but " + expected + " were requested; not altering it");
      }
      List<String> differ = new ArrayList<>();
      ColumnFamilyDescriptor want = family(a, a.families.get(0));
      for (ColumnFamilyDescriptor cf : td.getColumnFamilies()) {
        String n = cf.getNameAsString();
        if (cf.getMaxVersions() != want.getMaxVersions()) differ.add(n + ".max_versions");
        if (cf.getBloomFilterType() != want.getBloomFilterType()) differ.add(n + ".bloom_filter");
        if (cf.isBlockCacheEnabled() != want.isBlockCacheEnabled()) differ.add(n + ".block_cache");
        if (cf.getCompressionType() != want.getCompressionType()) differ.add(n + ".compression");
        if (cf.getTimeToLive() != want.getTimeToLive()) differ.add(n + ".ttl_seconds");
      }
      int regions = admin.getRegions(tn).size();
      if (regions != a.saltBuckets) differ.add("regions");
      Map<String, String> extra = new LinkedHashMap<>();
      extra.put("created", "false");
      extra.put("settings_differ", jsonStrings(differ));
      return describeJson(admin, tn, extra);
    } finally {
      try { conn.close(); } catch (Exception ignored) { }
    }
  }

  static ColumnFamilyDescriptor family(Args a, String name) {
    return ColumnFamilyDescriptorBuilder.newBuilder(Bytes.toBytes(name))
        .setMaxVersions(1)
        .setBloomFilterType(BloomType.ROW)
        .setBlockCacheEnabled(true)
        .setCompressionType(Compression.Algorithm.valueOf(a.compression))
        .setTimeToLive(a.ttlSeconds == 0 ? HConstants.FOREVER : (int) a.ttlSeconds)
        .build();
  }

  static TableDescriptor buildDescriptor(Args a, TableName tn) {
    TableDescriptorBuilder b = TableDescriptorBuilder.newBuilder(tn);
    for (String f : a.families) b.setColumnFamily(family(a, f));
    return b.build();
  }

  /** Single-byte split keys 0x01 .. buckets-1; null (no split) for one bucket. */
  static byte[][] splitKeys(int buckets) {
    if (buckets <= 1) return null;
    byte[][] keys = new byte[buckets - 1][];
    for (int s = 1; s < buckets; s++) keys[s - 1] = new byte[] { (byte) s };
    return keys;
  }

  static String describeJson(Admin admin, TableName tn, Map<String, String> lead)
      throws Exception {
    TableDescriptor td = admin.getDescriptor(tn);
    List<RegionInfo> regions = new ArrayList<>(admin.getRegions(tn));
    regions.sort((x, y) -> Bytes.compareTo(x.getStartKey(), y.getStartKey()));
    StringBuilder sb = new StringBuilder("{");
    if (lead != null) {
      for (Map.Entry<String, String> e : lead.entrySet()) {
        sb.append(jstr(e.getKey())).append(": ").append(e.getValue()).append(", ");
      }
    } else {
      sb.append("\"exists\": true, ");
    }
    sb.append("\"table\": ").append(jstr(tn.getNameAsString()));
    sb.append(", \"enabled\": ").append(admin.isTableEnabled(tn));
    sb.append(", \"families\": [");
    boolean first = true;
    for (ColumnFamilyDescriptor cf : td.getColumnFamilies()) {
      if (!first) sb.append(", ");
      first = false;
      int ttl = cf.getTimeToLive();
      sb.append("{\"name\": ").append(jstr(cf.getNameAsString()))
        .append(", \"max_versions\": ").append(cf.getMaxVersions())
        .append(", \"bloom_filter\": ").append(jstr(cf.getBloomFilterType().name()))
        .append(", \"block_cache\": ").append(cf.isBlockCacheEnabled())
        .append(", \"compression\": ").append(jstr(cf.getCompressionType().name()))
        .append(", \"ttl_seconds\": ").append(ttl == HConstants.FOREVER ? 0 : ttl)
        .append(", \"data_block_encoding\": ").append(jstr(cf.getDataBlockEncoding().name()))
        .append("}");
    }
    sb.append("], \"regions\": ").append(regions.size());
    List<String> starts = new ArrayList<>();
    for (RegionInfo r : regions) starts.add(hex(r.getStartKey()));
    sb.append(", \"start_keys\": ").append(jsonStrings(starts));
    sb.append("}");
    return sb.toString();
  }

  /** Lower-case hex of a key ("" for the empty first start key). */
  static String hex(byte[] b) {
    StringBuilder sb = new StringBuilder();
    for (byte x : b) sb.append(String.format("%02x", x & 0xff));
    return sb.toString();
  }

  static String jsonStrings(List<String> xs) {
    StringBuilder sb = new StringBuilder("[");
    for (int i = 0; i < xs.size(); i++) {
      if (i > 0) sb.append(", ");
      sb.append(jstr(xs.get(i)));
    }
    return sb.append("]").toString();
  }

  static String jstr(String s) {
    StringBuilder sb = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      switch (ch) {
        case '"': sb.append("\\\""); break;
        case '\\': sb.append("\\\\"); break;
        case '\n': sb.append("\\n"); break;
        case '\r': sb.append("\\r"); break;
        case '\t': sb.append("\\t"); break;
        default:
          if (ch < 0x20) sb.append(String.format("\\u%04x", (int) ch));
          else sb.append(ch);
      }
    }
    return sb.append('"').toString();
  }

  static String firstLine(String s) {
    if (s == null) return "";
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }
}
