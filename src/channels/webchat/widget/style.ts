// The widget's styles. They live in its shadow root (adoptedStyleSheets), so the host page's CSS
// does not reach in and ours does not leak out; no fonts, images or other assets are loaded.
export const WIDGET_CSS = `
:host { all: initial; }
* { box-sizing: border-box; }
.root { font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; }
.bubble {
  position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
  width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;
  background: #2456d6; color: #fff; box-shadow: 0 4px 14px rgba(0,0,0,.25);
  display: flex; align-items: center; justify-content: center; font-size: 24px;
}
.bubble:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #f2b705; outline-offset: 2px; }
.panel {
  position: fixed; right: 20px; bottom: 88px; z-index: 2147483000;
  width: min(370px, calc(100vw - 24px)); height: min(540px, calc(100vh - 112px));
  display: flex; flex-direction: column; background: #fff; border-radius: 12px; overflow: hidden;
  box-shadow: 0 8px 30px rgba(0,0,0,.28);
}
.panel[hidden] { display: none; }
.inline .panel { position: static; width: 100%; height: 460px; box-shadow: none; border: 1px solid #c9d1de; }
@media (max-width: 480px) {
  .root:not(.inline) .panel { right: 0; bottom: 0; width: 100vw; height: 100vh; border-radius: 0; }
  .root:not(.inline) .panel:not([hidden]) ~ .bubble { display: none; }
}
.head { display: flex; align-items: center; gap: 8px; padding: 10px 12px; background: #2456d6; color: #fff; }
.head h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 600; }
.close { background: transparent; color: #fff; border: 0; font-size: 22px; line-height: 1; cursor: pointer; padding: 4px 8px; border-radius: 6px; }
.log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; background: #f5f7fb; }
.msg { max-width: 85%; padding: 8px 11px; border-radius: 12px; white-space: pre-wrap; overflow-wrap: anywhere; }
.msg.in { align-self: flex-end; background: #2456d6; color: #fff; border-bottom-right-radius: 4px; }
.msg.out { align-self: flex-start; background: #fff; border: 1px solid #dde3ee; border-bottom-left-radius: 4px; }
.msg.typing { color: #5b6678; letter-spacing: 2px; }
.msg .note { display: block; font-size: 12px; opacity: .8; margin-top: 2px; }
.status { margin: 0; padding: 4px 12px; font-size: 13px; color: #8a3b00; background: #fff4e5; }
.status:empty { display: none; }
form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid #dde3ee; background: #fff; }
textarea {
  flex: 1; resize: none; min-height: 40px; max-height: 120px; padding: 9px 10px; font: inherit; color: inherit;
  border: 1px solid #b9c3d3; border-radius: 8px;
}
.send { border: 0; border-radius: 8px; padding: 0 14px; background: #2456d6; color: #fff; font: inherit; font-weight: 600; cursor: pointer; }
.send:disabled { opacity: .5; cursor: default; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (prefers-reduced-motion: no-preference) { .panel { transition: opacity .15s; } }
`;
