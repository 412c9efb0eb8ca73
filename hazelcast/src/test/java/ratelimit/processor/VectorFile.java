package ratelimit.processor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One shared vector file of {@code tests/vectors} (the folder is the {@code vectors.dir}
 * property), read by column name; a list column holds numbers separated by spaces.
 */
final class VectorFile {

    /** One row: its columns by name. */
    record Row(Map<String, String> columns) {

        String name() {
            return text("name");
        }

        String text(String column) {
            String value = columns.get(column);
            if (value == null) {
                throw new IllegalArgumentException("no column " + column);
            }
            return value;
        }

        long number(String column) {
            return Long.parseLong(text(column));
        }

        boolean flag(String column) {
            return text(column).equals("1");
        }

        long[] numbers(String column) {
            return Arrays.stream(text(column).trim().split(" +")).mapToLong(Long::parseLong).toArray();
        }
    }

    private VectorFile() {
    }

    static List<Row> read(String fileName) throws IOException {
        Path file = Path.of(System.getProperty("vectors.dir", "../tests/vectors"), fileName);
        List<String> lines = Files.readAllLines(file);
        String[] header = lines.get(0).split(",");
        List<Row> rows = new ArrayList<>();
        for (String line : lines.subList(1, lines.size())) {
            if (line.isBlank()) {
                continue;
            }
            String[] cells = line.split(",", -1);
            if (cells.length != header.length) {
                throw new IllegalArgumentException(fileName + ": " + cells.length + " columns in " + line);
            }
            Map<String, String> columns = new HashMap<>();
            for (int i = 0; i < header.length; i++) {
                columns.put(header[i], cells[i]);
            }
            rows.add(new Row(columns));
        }
        return rows;
    }
}
