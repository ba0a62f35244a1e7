// A rate chart drawn by hand on a <canvas>: one line per partition, records per second over the last `seconds`.
// rates(): Map partition → array of per-second counts, oldest first, the last one the second in progress.

export function rateChart (canvas, { seconds = 60, colour }) {
  const ctx = canvas.getContext('2d')
  let width = 0
  let height = 0

  function resize () {
    const dpr = window.devicePixelRatio || 1
    const w = canvas.clientWidth
    const h = canvas.clientHeight
    if (w === width && h === height && canvas.width === Math.round(w * dpr)) return
    width = w
    height = h
    canvas.width = Math.round(w * dpr)
    canvas.height = Math.round(h * dpr)
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0)
  }

  // A ceiling that reads well on the axis, in five steps: 5, 10, 20, 25, 50, 100, …
  function nice (v) {
    const steps = [5, 10, 20, 25, 50]
    let scale = 1
    for (;;) {
      for (const s of steps) if (v <= s * scale) return s * scale
      scale *= 10
    }
  }

  function draw (rates) {
    resize()
    if (!width || !height) return
    const pad = { l: 34, r: 8, t: 10, b: 22 }
    const w = width - pad.l - pad.r
    const h = height - pad.t - pad.b
    ctx.clearRect(0, 0, width, height)

    let max = 0
    for (const series of rates.values()) for (const v of series) if (v > max) max = v
    const top = nice(Math.max(max * 1.15, 5))
    const x = (i) => pad.l + (i / (seconds - 1)) * w
    const y = (v) => pad.t + h - (v / top) * h

    // Grid and axis labels.
    ctx.font = '11px system-ui, sans-serif'
    ctx.fillStyle = 'rgba(148, 163, 184, 0.9)'
    ctx.strokeStyle = 'rgba(148, 163, 184, 0.14)'
    ctx.lineWidth = 1
    ctx.textAlign = 'right'
    ctx.textBaseline = 'middle'
    for (let k = 0; k <= 5; k++) {
      const v = (top / 5) * k
      const yy = Math.round(y(v)) + 0.5
      ctx.beginPath()
      ctx.moveTo(pad.l, yy)
      ctx.lineTo(pad.l + w, yy)
      ctx.stroke()
      ctx.fillText(String(Math.round(v * 10) / 10), pad.l - 6, yy)
    }
    ctx.textBaseline = 'alphabetic'
    for (const s of [45, 30, 15, 0]) {
      if (s >= seconds) continue
      ctx.textAlign = s ? 'center' : 'right'
      ctx.fillText(s ? `−${s}s` : 'now', x(seconds - 1 - s), height - 6)
    }

    // One filled line per partition.
    for (const [part, series] of rates) {
      const pts = series.slice(-seconds)
      const off = seconds - pts.length
      if (pts.length < 2) continue
      const c = colour(part)
      ctx.beginPath()
      pts.forEach((v, i) => (i ? ctx.lineTo(x(off + i), y(v)) : ctx.moveTo(x(off + i), y(v))))
      ctx.lineTo(x(seconds - 1), y(0))
      ctx.lineTo(x(off), y(0))
      ctx.closePath()
      const g = ctx.createLinearGradient(0, pad.t, 0, pad.t + h)
      g.addColorStop(0, c + '40')
      g.addColorStop(1, c + '00')
      ctx.fillStyle = g
      ctx.fill()
      ctx.beginPath()
      pts.forEach((v, i) => (i ? ctx.lineTo(x(off + i), y(v)) : ctx.moveTo(x(off + i), y(v))))
      ctx.strokeStyle = c
      ctx.lineWidth = 2
      ctx.lineJoin = 'round'
      ctx.stroke()
    }
  }

  return { draw }
}
