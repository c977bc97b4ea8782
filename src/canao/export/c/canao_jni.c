/* canao_jni.c: the JNI glue between ai.canao.CanaoModel / CanaoTokenizer (java/) and the C API.
 *
 * Every C error becomes a thrown ai.canao.CanaoException (code + message); Java arrays are copied in and out,
 * so no Java memory is held across calls. Built by `make jni` (JDK headers) or by an Android NDK build.
 */
#include <jni.h>
#include <stdlib.h>
#include <string.h>

#include "canao_api.h"
#include "canao_tokenizer.h"

static void throw_canao(JNIEnv *env, int code, const char *message) {
    jclass cls = (*env)->FindClass(env, "ai/canao/CanaoException");
    if (!cls) return; /* NoClassDefFoundError is pending */
    jmethodID init = (*env)->GetMethodID(env, cls, "<init>", "(ILjava/lang/String;)V");
    jstring text = (*env)->NewStringUTF(env, message);
    if (init && text) {
        jobject err = (*env)->NewObject(env, cls, init, (jint)code, text);
        if (err) (*env)->Throw(env, (jthrowable)err);
    }
}

static canao_model *model_of(jlong h) { return (canao_model *)(intptr_t)h; }
static canao_tokenizer *tok_of(jlong h) { return (canao_tokenizer *)(intptr_t)h; }

/* A copy of a Java int[] (NULL for a null array); *n its length. Throws and returns NULL on failure. */
static int32_t *ints_in(JNIEnv *env, jintArray array, jsize *n, int *failed) {
    *n = 0;
    *failed = 0;
    if (!array) return NULL;
    *n = (*env)->GetArrayLength(env, array);
    int32_t *out = malloc((size_t)(*n > 0 ? *n : 1) * sizeof(int32_t));
    if (!out) {
        *failed = 1;
        throw_canao(env, CANAO_ENOMEM, "out of memory");
        return NULL;
    }
    (*env)->GetIntArrayRegion(env, array, 0, *n, (jint *)out);
    return out;
}

static jfloatArray floats_out(JNIEnv *env, canao_model *m, int i) {
    const float *data;
    long count;
    int rc = canao_model_output(m, i, &data, &count);
    if (rc != CANAO_OK) {
        throw_canao(env, rc, "no such output, or no successful call yet");
        return NULL;
    }
    jfloatArray out = (*env)->NewFloatArray(env, (jsize)count);
    if (out) (*env)->SetFloatArrayRegion(env, out, 0, (jsize)count, data);
    return out;
}

/* Open a native object from a Java path: `open` returns a handle or throws (message in msg). */
typedef jlong (*opener)(JNIEnv *env, const char *path);

static jlong open_path(JNIEnv *env, jstring path, int null_code, opener open) {
    if (!path) {
        throw_canao(env, null_code, "path is null");
        return 0;
    }
    const char *p = (*env)->GetStringUTFChars(env, path, NULL);
    if (!p) return 0; /* OutOfMemoryError is pending */
    jlong handle = open(env, p);
    (*env)->ReleaseStringUTFChars(env, path, p);
    return handle;
}

static jlong open_model(JNIEnv *env, const char *path) {
    canao_model *m = NULL;
    char msg[512];
    int rc = canao_model_open(path, &m, msg, sizeof msg);
    if (rc != CANAO_OK) throw_canao(env, rc, msg);
    return (jlong)(intptr_t)m;
}

static jlong open_tokenizer(JNIEnv *env, const char *path) {
    canao_tokenizer *tok = NULL;
    int rc = canao_tok_load(path, &tok);
    if (rc != CANAO_TOK_OK) throw_canao(env, rc, canao_tok_error(rc));
    return (jlong)(intptr_t)tok;
}

JNIEXPORT jlong JNICALL Java_ai_canao_CanaoModel_nativeOpen(JNIEnv *env, jclass cls, jstring path) {
    (void)cls;
    return open_path(env, path, CANAO_EARG, open_model);
}

JNIEXPORT jboolean JNICALL Java_ai_canao_CanaoModel_nativeIsDecoder(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    return canao_model_kind(model_of(h)) == CANAO_DECODER;
}

JNIEXPORT jint JNICALL Java_ai_canao_CanaoModel_nativeMaxPositions(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    return canao_model_max_positions(model_of(h));
}

JNIEXPORT jint JNICALL Java_ai_canao_CanaoModel_nativeVocabSize(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    return canao_model_vocab_size(model_of(h));
}

JNIEXPORT jint JNICALL Java_ai_canao_CanaoModel_nativeContextLength(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    return canao_model_context_length(model_of(h));
}

JNIEXPORT jfloatArray JNICALL Java_ai_canao_CanaoModel_nativeEncode(JNIEnv *env, jclass cls, jlong h, jintArray ids,
                                                                   jintArray types, jintArray keep) {
    (void)cls;
    canao_model *m = model_of(h);
    jsize n, nt, nk;
    int f1, f2, f3;
    if (!ids) {
        throw_canao(env, CANAO_EARG, "ids is null");
        return NULL;
    }
    int32_t *a = ints_in(env, ids, &n, &f1), *t = ints_in(env, types, &nt, &f2), *k = ints_in(env, keep, &nk, &f3);
    jfloatArray out = NULL;
    if (!f1 && !f2 && !f3) {
        if ((types && nt != n) || (keep && nk != n)) {
            throw_canao(env, CANAO_EARG, "typeIds and keep must have the length of ids");
        } else {
            int rc = canao_model_encode(m, a, t, k, (int)n);
            if (rc != CANAO_OK) throw_canao(env, rc, canao_model_error(m));
            else out = floats_out(env, m, 0);
        }
    }
    free(a), free(t), free(k);
    return out;
}

JNIEXPORT jfloatArray JNICALL Java_ai_canao_CanaoModel_nativeOutput(JNIEnv *env, jclass cls, jlong h, jint i) {
    (void)cls;
    return floats_out(env, model_of(h), (int)i);
}

JNIEXPORT void JNICALL Java_ai_canao_CanaoModel_nativeReset(JNIEnv *env, jclass cls, jlong h) {
    (void)cls;
    canao_model *m = model_of(h);
    int rc = canao_model_reset(m);
    if (rc != CANAO_OK) throw_canao(env, rc, canao_model_error(m));
}

JNIEXPORT jfloatArray JNICALL Java_ai_canao_CanaoModel_nativeAppend(JNIEnv *env, jclass cls, jlong h, jintArray ids) {
    (void)cls;
    canao_model *m = model_of(h);
    jsize n;
    int failed;
    if (!ids) {
        throw_canao(env, CANAO_EARG, "ids is null");
        return NULL;
    }
    int32_t *a = ints_in(env, ids, &n, &failed);
    jfloatArray out = NULL;
    if (!failed) {
        int rc = canao_model_append(m, a, (int)n);
        if (rc != CANAO_OK) throw_canao(env, rc, canao_model_error(m));
        else out = floats_out(env, m, 0);
    }
    free(a);
    return out;
}

JNIEXPORT void JNICALL Java_ai_canao_CanaoModel_nativeFree(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    canao_model_free(model_of(h));
}

/* ------------------------------------------------------------------ tokenizer */

JNIEXPORT jlong JNICALL Java_ai_canao_CanaoTokenizer_nativeLoad(JNIEnv *env, jclass cls, jstring path) {
    (void)cls;
    return open_path(env, path, CANAO_TOK_EARG, open_tokenizer);
}

JNIEXPORT jintArray JNICALL Java_ai_canao_CanaoTokenizer_nativeEncode(JNIEnv *env, jclass cls, jlong h,
                                                                     jbyteArray utf8) {
    (void)cls;
    if (!utf8) {
        throw_canao(env, CANAO_TOK_EARG, "text is null");
        return NULL;
    }
    jsize len = (*env)->GetArrayLength(env, utf8);
    char *text = malloc((size_t)len + 1);
    if (!text) {
        throw_canao(env, CANAO_TOK_ENOMEM, "out of memory");
        return NULL;
    }
    (*env)->GetByteArrayRegion(env, utf8, 0, len, (jbyte *)text);
    text[len] = '\0';
    int needed = 0;
    int rc = canao_tok_encode(tok_of(h), text, (size_t)len, NULL, NULL, NULL, 0, &needed);
    int32_t *ids = NULL;
    jintArray out = NULL;
    if (rc == CANAO_TOK_ECAPACITY || rc >= 0) {
        ids = malloc((size_t)(needed > 0 ? needed : 1) * sizeof(int32_t));
        rc = ids ? canao_tok_encode(tok_of(h), text, (size_t)len, ids, NULL, NULL, needed, NULL) : CANAO_TOK_ENOMEM;
    }
    if (rc < 0) throw_canao(env, rc, canao_tok_error(rc));
    else if ((out = (*env)->NewIntArray(env, rc)) != NULL) (*env)->SetIntArrayRegion(env, out, 0, rc, (jint *)ids);
    free(ids);
    free(text);
    return out;
}

JNIEXPORT jbyteArray JNICALL Java_ai_canao_CanaoTokenizer_nativeDecode(JNIEnv *env, jclass cls, jlong h,
                                                                      jintArray ids, jboolean skip) {
    (void)cls;
    jsize n;
    int failed;
    if (!ids) {
        throw_canao(env, CANAO_TOK_EARG, "ids is null");
        return NULL;
    }
    int32_t *a = ints_in(env, ids, &n, &failed);
    if (failed) return NULL;
    size_t needed = 0;
    int rc = canao_tok_decode(tok_of(h), a, (int)n, skip, NULL, 0, &needed);
    char *text = rc == CANAO_TOK_ECAPACITY || rc >= 0 ? malloc(needed + 1) : NULL;
    if (text) rc = canao_tok_decode(tok_of(h), a, (int)n, skip, text, needed + 1, NULL);
    else if (rc >= 0 || rc == CANAO_TOK_ECAPACITY) rc = CANAO_TOK_ENOMEM;
    jbyteArray out = NULL;
    if (rc < 0) throw_canao(env, rc, canao_tok_error(rc));
    else if ((out = (*env)->NewByteArray(env, rc)) != NULL) (*env)->SetByteArrayRegion(env, out, 0, rc, (jbyte *)text);
    free(text);
    free(a);
    return out;
}

JNIEXPORT jint JNICALL Java_ai_canao_CanaoTokenizer_nativeSpecial(JNIEnv *env, jclass cls, jlong h, jint which) {
    (void)env, (void)cls;
    return which == 0 ? canao_tok_cls_id(tok_of(h)) : canao_tok_sep_id(tok_of(h));
}

JNIEXPORT void JNICALL Java_ai_canao_CanaoTokenizer_nativeFree(JNIEnv *env, jclass cls, jlong h) {
    (void)env, (void)cls;
    canao_tok_free(tok_of(h));
}
