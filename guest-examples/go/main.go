// invoice: a Sandstep command written in Go (WASI preview 1).
//
// Input on stdin:  {"customers": [{"customer": "Ada", "total": 8.2}], "tax_rate": 0.2, "currency": "EUR"}
// Output on stdout: {"currency", "lines": [{"customer", "net", "tax", "gross"}], "totals": {"net", "tax", "gross"}}
//
// Fields it does not know are ignored. Amounts are computed in whole cents. Bad input exits 1 after printing
// {"error": {"message": ..., "retryable": false}} on stdout, which Sandstep
// turns into a non-retryable step error. Lines on stderr become the step's logs.
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

type request struct {
	Customers []struct {
		Customer string   `json:"customer"`
		Total    *float64 `json:"total"`
	} `json:"customers"`
	TaxRate         *float64         `json:"tax_rate"`
	Currency        string           `json:"currency"`
	SimulateFailure *simulateFailure `json:"simulate_failure"`
}

type simulateFailure struct {
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

type amounts struct {
	Net   float64 `json:"net"`
	Tax   float64 `json:"tax"`
	Gross float64 `json:"gross"`
}

type line struct {
	Customer string `json:"customer"`
	amounts
}

type invoice struct {
	Currency string  `json:"currency"`
	Lines    []line  `json:"lines"`
	Totals   amounts `json:"totals"`
}

// fail reports an error the way Sandstep reads it from a command, and exits.
func fail(message string, retryable bool) {
	out, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message, "retryable": retryable}})
	fmt.Println(string(out))
	os.Exit(1)
}

func cents(amount float64) int64 { return int64(math.Round(amount * 100)) }

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail("input is not a valid request: "+err.Error(), false)
	}
	if req.SimulateFailure != nil {
		fail(req.SimulateFailure.Message, req.SimulateFailure.Retryable)
	}
	if req.TaxRate == nil || *req.TaxRate < 0 || *req.TaxRate > 1 {
		fail("tax_rate must be a number between 0 and 1", false)
	}
	if req.Currency == "" {
		req.Currency = "EUR"
	}

	inv := invoice{Currency: req.Currency, Lines: []line{}}
	var net, tax int64
	for i, c := range req.Customers {
		if c.Customer == "" || c.Total == nil || *c.Total < 0 {
			fail(fmt.Sprintf("customers[%d] needs a customer name and a total >= 0", i), false)
		}
		n := cents(*c.Total)
		t := int64(math.Round(float64(n) * *req.TaxRate))
		net, tax = net+n, tax+t
		inv.Lines = append(inv.Lines, line{c.Customer, amounts{float64(n) / 100, float64(t) / 100, float64(n+t) / 100}})
	}
	inv.Totals = amounts{float64(net) / 100, float64(tax) / 100, float64(net+tax) / 100}
	fmt.Fprintf(os.Stderr, "invoiced %d customers, %d cents gross\n", len(inv.Lines), net+tax)

	out, err := json.Marshal(inv)
	if err != nil {
		fail("cannot encode the invoice: "+err.Error(), false)
	}
	os.Stdout.Write(out)
}
