package ai.canao;

/** A failure reported by the native canao library: bad input, damaged weights or tokenizer, out of memory. */
public final class CanaoException extends Exception {
    private final int code;

    public CanaoException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** The C API's error code (canao_api.h CANAO_E*, or canao_tokenizer.h CANAO_TOK_E*). */
    public int code() {
        return code;
    }
}
