// A minimal web app: answers every GET with JSON naming the instance that answered.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"strconv"
)

func main() {
	index, _ := strconv.Atoi(os.Getenv("CF_INSTANCE_INDEX"))
	var vcap struct {
		Name string `json:"application_name"`
	}
	_ = json.Unmarshal([]byte(os.Getenv("VCAP_APPLICATION")), &vcap)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"app":            vcap.Name,
			"instance_index": index,
			"language":       "go",
			"path":           r.URL.Path,
		})
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
