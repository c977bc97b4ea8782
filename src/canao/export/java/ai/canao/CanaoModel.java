package ai.canao;

/**
 * An exported canao model, run through the C API (canao_api.h) by the JNI glue in canao_jni.c.
 *
 * <p>Load the native library once (System.loadLibrary("canao_jni") in an app, System.load(path) in a test),
 * then open the package's weights.bin. Every failure of the C side (damaged weights, ids out of range, a
 * full decoder context) is thrown as a {@link CanaoException} with its message; nothing aborts the process.
 * One instance owns one activation arena: its methods are synchronized.
 *
 * <pre>
 *   try (CanaoModel m = CanaoModel.open(dir + "/weights.bin")) {
 *       float[] logits = m.encode(ids, typeIds);
 *   }
 * </pre>
 */
public final class CanaoModel extends NativeHandle {
    private CanaoModel(long handle) {
        super(handle, "model");
    }

    @Override
    void free(long handle) {
        nativeFree(handle);
    }

    /** Opens weights.bin of an exported package (its header is checked against the code linked in). */
    public static CanaoModel open(String weightsPath) throws CanaoException {
        return new CanaoModel(nativeOpen(weightsPath));
    }

    /** True for a decoder (reset / append), false for an encoder (encode). */
    public synchronized boolean isDecoder() {
        return nativeIsDecoder(live());
    }

    public synchronized int maxPositions() {
        return nativeMaxPositions(live());
    }

    public synchronized int vocabSize() {
        return nativeVocabSize(live());
    }

    /** Encoder forward of one sequence; typeIds and keep (1 attend, 0 padding) may be null. Returns output 0. */
    public synchronized float[] encode(int[] ids, int[] typeIds, int[] keep) throws CanaoException {
        return nativeEncode(live(), ids, typeIds, keep);
    }

    public float[] encode(int[] ids, int[] typeIds) throws CanaoException {
        return encode(ids, typeIds, null);
    }

    /** Output i of the last call (e.g. the pooled vector of a backbone, output 1). */
    public synchronized float[] output(int i) throws CanaoException {
        return nativeOutput(live(), i);
    }

    /** Decoder: start a new context. */
    public synchronized void reset() throws CanaoException {
        nativeReset(live());
    }

    /** Decoder: run ids through the context (the prompt, then one token at a time); returns [ids.length * vocab] logits. */
    public synchronized float[] append(int[] ids) throws CanaoException {
        return nativeAppend(live(), ids);
    }

    public synchronized int contextLength() {
        return nativeContextLength(live());
    }

    private static native long nativeOpen(String path) throws CanaoException;
    private static native boolean nativeIsDecoder(long h);
    private static native int nativeMaxPositions(long h);
    private static native int nativeVocabSize(long h);
    private static native float[] nativeEncode(long h, int[] ids, int[] typeIds, int[] keep) throws CanaoException;
    private static native float[] nativeOutput(long h, int i) throws CanaoException;
    private static native void nativeReset(long h) throws CanaoException;
    private static native float[] nativeAppend(long h, int[] ids) throws CanaoException;
    private static native int nativeContextLength(long h);
    private static native void nativeFree(long h);
}
