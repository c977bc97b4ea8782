package ai.canao;

import java.nio.charset.StandardCharsets;

/** The package's tokenizer.bin (WordPiece or byte-level BPE), equal in ids to the `tokenizers` library. */
public final class CanaoTokenizer extends NativeHandle {
    private CanaoTokenizer(long handle) {
        super(handle, "tokenizer");
    }

    @Override
    void free(long handle) {
        nativeFree(handle);
    }

    public static CanaoTokenizer open(String path) throws CanaoException {
        return new CanaoTokenizer(nativeLoad(path));
    }

    /** Token ids of the text, without [CLS] / [SEP]. */
    public synchronized int[] encode(String text) throws CanaoException {
        return nativeEncode(live(), text.getBytes(StandardCharsets.UTF_8));
    }

    /** The text of ids (special tokens skipped when skipSpecial). */
    public synchronized String decode(int[] ids, boolean skipSpecial) throws CanaoException {
        return new String(nativeDecode(live(), ids, skipSpecial), StandardCharsets.UTF_8);
    }

    public synchronized int clsId() {
        return nativeSpecial(live(), 0);
    }

    public synchronized int sepId() {
        return nativeSpecial(live(), 1);
    }

    private static native long nativeLoad(String path) throws CanaoException;
    private static native int[] nativeEncode(long h, byte[] utf8) throws CanaoException;
    private static native byte[] nativeDecode(long h, int[] ids, boolean skipSpecial) throws CanaoException;
    private static native int nativeSpecial(long h, int which);
    private static native void nativeFree(long h);
}
