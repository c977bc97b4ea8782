import ai.canao.CanaoException;
import ai.canao.CanaoModel;
import ai.canao.CanaoTokenizer;

/** Drives the JNI binding for tests/export/test_jni.py: prints outputs and caught errors, one per line. */
public class JniCheck {
    static int[] ints(String csv) {
        if (csv.isEmpty()) return new int[0];
        String[] parts = csv.split(",");
        int[] out = new int[parts.length];
        for (int i = 0; i < parts.length; i++) out[i] = Integer.parseInt(parts[i]);
        return out;
    }

    static void print(String tag, float[] values) {
        StringBuilder b = new StringBuilder(tag);
        for (float v : values) b.append(' ').append(v);
        System.out.println(b);
    }

    static void expectFailure(String tag, Runnable call) {
        try {
            call.run();
            System.out.println(tag + " no-error");
        } catch (RuntimeException e) {
            Throwable cause = e.getCause();
            if (cause instanceof CanaoException) {
                System.out.println(tag + " " + ((CanaoException) cause).code() + " " + cause.getMessage());
            } else {
                System.out.println(tag + " " + e);
            }
        }
    }

    interface Call {
        void run() throws CanaoException;
    }

    static Runnable wrap(Call c) {
        return () -> {
            try {
                c.run();
            } catch (CanaoException e) {
                throw new RuntimeException(e);
            }
        };
    }

    public static void main(String[] args) throws Exception {
        System.load(args[0]);
        String mode = args[1];
        if (mode.equals("tokens")) {
            try (CanaoTokenizer tok = CanaoTokenizer.open(args[2])) {
                for (int i = 3; i < args.length; i++) {
                    int[] ids = tok.encode(args[i]);
                    StringBuilder b = new StringBuilder("ids");
                    for (int id : ids) b.append(' ').append(id);
                    System.out.println(b);
                }
            }
            expectFailure("tokenizer-missing", wrap(() -> CanaoTokenizer.open(args[2] + ".nope")));
            return;
        }
        expectFailure("open-missing", wrap(() -> CanaoModel.open(args[2] + ".nope")));
        try (CanaoModel m = CanaoModel.open(args[2])) {
            if (mode.equals("encode")) {
                print("out", m.encode(ints(args[3]), ints(args[4])));
                expectFailure("id-range", wrap(() -> m.encode(new int[] {m.vocabSize()}, null)));
                expectFailure("empty", wrap(() -> m.encode(new int[0], null)));
                expectFailure("length-mismatch", wrap(() -> m.encode(new int[] {1, 2}, new int[] {0})));
                expectFailure("kind", wrap(() -> m.reset()));
            } else {
                m.reset();
                print("out", m.append(ints(args[3])));
                print("out", m.append(ints(args[4])));
                expectFailure("kind", wrap(() -> m.encode(new int[] {1}, null)));
                expectFailure("too-long", wrap(() -> m.append(new int[m.maxPositions()])));
            }
        }
        CanaoModel closed = CanaoModel.open(args[2]);
        closed.close();
        try {
            closed.maxPositions();
            System.out.println("closed no-error");
        } catch (IllegalStateException e) {
            System.out.println("closed " + e.getMessage());
        }
    }
}
