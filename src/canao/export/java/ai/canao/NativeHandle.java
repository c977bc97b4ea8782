package ai.canao;

/** An object of the native library owned through a handle: closed once, unusable after. */
abstract class NativeHandle implements AutoCloseable {
    private long handle;
    private final String what;

    NativeHandle(long handle, String what) {
        this.handle = handle;
        this.what = what;
    }

    /** Frees the native object behind `handle`. */
    abstract void free(long handle);

    long live() {
        if (handle == 0) throw new IllegalStateException("the " + what + " is closed");
        return handle;
    }

    @Override
    public synchronized void close() {
        if (handle != 0) {
            free(handle);
            handle = 0;
        }
    }
}
