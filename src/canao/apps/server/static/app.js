// The canao web page: question answering with the answer highlighted in its context, and streamed
// text generation (server-sent events read from a fetch stream). No external resources.
"use strict";

const $ = (id) => document.getElementById(id);

function setStatus(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return `${response.status}: ${body.detail}`;
    if (Array.isArray(body.detail)) {
      return `${response.status}: ` + body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    }
  } catch (e) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

document.querySelectorAll(".tab").forEach((tab) => {
  tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.classList.remove("active"));
    document.querySelectorAll(".panel").forEach((p) => p.classList.remove("active"));
    tab.classList.add("active");
    $(tab.dataset.panel).classList.add("active");
  });
});

async function loadModels() {
  const response = await fetch("/v1/models");
  const { models } = await response.json();
  $("models-line").textContent = models.map((m) => `${m.name} (${m.task}, ${m.arch}, ${m.precision})`).join(" · ");
  for (const [select, task] of [["qa-model", "qa"], ["gen-model", "lm"]]) {
    const options = models.filter((m) => m.task === task);
    $(select).innerHTML = "";
    for (const m of options) {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = m.name;
      $(select).appendChild(option);
    }
    if (!options.length) {
      $(select).disabled = true;
      setStatus(task === "qa" ? "qa-status" : "gen-status", `no ${task} model is served`, true);
    }
  }
}

function showHighlight(context, answer) {
  const view = $("qa-highlight");
  view.textContent = "";
  if (!answer) { view.textContent = context; return; }
  view.appendChild(document.createTextNode(context.slice(0, answer.start)));
  const mark = document.createElement("mark");
  mark.id = "qa-mark";
  mark.textContent = context.slice(answer.start, answer.end);
  view.appendChild(mark);
  view.appendChild(document.createTextNode(context.slice(answer.end)));
}

async function ask() {
  const context = $("qa-context").value;
  const body = { model: $("qa-model").value || null, question: $("qa-question").value, context };
  setStatus("qa-status", "asking…");
  $("qa-answer").textContent = "";
  const started = performance.now();
  const response = await fetch("/v1/qa", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) { setStatus("qa-status", await errorText(response), true); return; }
  const result = await response.json();
  const elapsed = performance.now() - started;
  const best = result.results[0].answers[0];
  $("qa-answer").textContent = best ? best.text : "(no answer found)";
  showHighlight(context, best);
  const t = result.timings;
  setStatus("qa-status",
    `${elapsed.toFixed(0)} ms end to end · model ${t.model_ms.toFixed(1)} ms over ${t.windows} window(s) · ` +
    `tokenise ${t.tokenize_ms.toFixed(1)} ms · decode ${t.decode_ms.toFixed(1)} ms` +
    (best ? ` · p=${best.probability.toFixed(2)}` : ""));
}

let controller = null;

async function generate() {
  const number = (id) => Number($(id).value);
  const body = {
    model: $("gen-model").value || null, prompt: $("gen-prompt").value, stream: true,
    max_new_tokens: number("gen-max"), temperature: number("gen-temp"), top_k: number("gen-topk"),
    top_p: number("gen-topp"), repetition_penalty: number("gen-rep"), seed: number("gen-seed"),
  };
  $("gen-output").textContent = body.prompt;
  setStatus("gen-status", "generating…");
  $("gen-start").disabled = true;
  $("gen-stop").disabled = false;
  controller = new AbortController();
  const started = performance.now();
  let tokens = 0;
  try {
    const response = await fetch("/v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) { setStatus("gen-status", await errorText(response), true); return; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1] || "{}");
        if (kind === "token") {
          tokens += 1;
          $("gen-output").textContent += data.text;
          setStatus("gen-status", `${tokens} pieces · ${(performance.now() - started).toFixed(0)} ms`);
        } else if (kind === "done") {
          setStatus("gen-status",
            `${data.new_tokens} tokens · first token ${data.time_to_first_token_ms.toFixed(0)} ms · ` +
            `${data.tokens_per_s.toFixed(1)} tokens/s · stopped: ${data.stop_reason}`);
        }
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") setStatus("gen-status", String(e), true);
    else setStatus("gen-status", "stopped");
  } finally {
    $("gen-start").disabled = false;
    $("gen-stop").disabled = true;
  }
}

$("qa-ask").addEventListener("click", ask);
$("qa-question").addEventListener("keydown", (e) => { if (e.key === "Enter") ask(); });
$("gen-start").addEventListener("click", generate);
$("gen-stop").addEventListener("click", () => controller && controller.abort());
loadModels().catch((e) => { $("models-line").textContent = `cannot list models: ${e}`; });
