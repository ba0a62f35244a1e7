// A WebSocket constructor for the library's `WebSocket` option that lets the page see what the library keeps
// to itself: every frame the server sends (the `assigned` frames, notifications before the library drops
// duplicates), and the sockets themselves, so the page can cut them.

export function wire (Base, onFrame) {
  const open = new Set()
  let downUntil = 0

  class WireSocket extends Base {
    constructor (url, protocols) {
      // While the demo holds the network down, connecting fails as it does offline (the library backs off).
      if (Date.now() < downUntil) throw new DOMException('the demo cut the network', 'NetworkError')
      super(url, protocols)
      open.add(this)
      // Registered before the library's onmessage: the page sees each frame first.
      this.addEventListener('message', (ev) => {
        if (typeof ev.data !== 'string') return
        let frame
        try { frame = JSON.parse(ev.data) } catch { return }
        for (const x of Array.isArray(frame) ? frame : [frame]) onFrame(this, x)
      })
      this.addEventListener('close', () => open.delete(this))
    }
  }

  return {
    WebSocket: WireSocket,
    // Close every open socket, and fail new ones for `ms`: the library sees closes it did not ask for, and
    // reconnects with its backoff.
    cut (ms = 0, code = 4100, reason = 'cut by the demo') {
      downUntil = Date.now() + ms
      const n = open.size
      for (const s of open) s.close(code, reason)
      return n
    }
  }
}
