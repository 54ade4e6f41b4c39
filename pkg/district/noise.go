package district

import "math"

// Deterministic noise: every random-looking quantity of the simulation is a
// pure function of (seed, stream, a, b), so a day can be regenerated alone,
// in any order, and the live and backfill paths agree to the bit.

// Streams keep independent uses of the noise apart.
const (
	streamLayout uint64 = iota + 1
	streamPRM
	streamKind
	streamScale
	streamHeat
	streamConsent
	streamReconcile
	streamMiss
	streamDayNoise
	streamStepNoise
	streamWeather
	streamCloud
	streamSession
	streamInstall
	streamSchedule
)

// mix64 is the splitmix64 finaliser: a cheap bijection with good avalanche.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func hash4(seed, stream, a, b uint64) uint64 {
	h := mix64(seed + 0x9e3779b97f4a7c15*stream)
	h = mix64(h ^ (a + 0x632be59bd9b4e019))
	return mix64(h ^ (b * 0xd6e8feb86659fd93))
}

// uniform returns a number in [0, 1).
func uniform(seed, stream, a, b uint64) float64 {
	return float64(hash4(seed, stream, a, b)>>11) / (1 << 53)
}

// normal returns a standard normal variate (Box–Muller on two uniforms).
func normal(seed, stream, a, b uint64) float64 {
	u1 := uniform(seed, stream, a, 2*b)
	u2 := uniform(seed, stream, a, 2*b+1)
	return math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
}
