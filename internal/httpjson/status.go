package httpjson

import "net/http"

// StatusRecorder remembers the status a handler sent (200 when it sent
// none), for metrics and traces. It flushes and unwraps, so event streams
// and http.ResponseController work through it.
type StatusRecorder struct {
	http.ResponseWriter
	Code  int
	wrote bool
}

// NewStatusRecorder wraps w.
func NewStatusRecorder(w http.ResponseWriter) *StatusRecorder {
	return &StatusRecorder{ResponseWriter: w, Code: http.StatusOK}
}

func (w *StatusRecorder) WriteHeader(code int) {
	if !w.wrote {
		w.Code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusRecorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Flush flushes the response when the writer under it can.
func (w *StatusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		w.wrote = true
		f.Flush()
	}
}

// Unwrap is the writer under it.
func (w *StatusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
